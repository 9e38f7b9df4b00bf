//! The results page and chart, from made-up results.

use super::*;

/// Fails with the whole report when `md` lacks `text`.
fn assert_has(md: &str, text: &str) {
    assert!(md.contains(text), "no {text:?} in:\n{md}");
}

fn figures(rate: f64, cpu_us: f64) -> Figures {
    Figures {
        rate,
        p50_us: 500.0,
        p99_us: 1500.0,
        cpu_us,
        kernel_us: cpu_us / 4.0,
    }
}

fn results() -> Results {
    Results {
        quick: false,
        machine: Machine {
            cpu: "Test CPU".into(),
            cores: 2,
            kernel: "Linux 6.1".into(),
            tools: "h2load 1.52.0, wrk 4.1.0".into(),
            date: "2026-11-21".into(),
        },
        comparisons: vec![Comparison {
            scenario: "Recommend (v1)".into(),
            load: "h2load, 8 connections × 16 streams".into(),
            service: "recommendations".into(),
            ceiling: "bare tonic".into(),
            service_figures: figures(90_000.0, 11.0),
            ceiling_figures: figures(100_000.0, 10.0),
            rounds: vec![(figures(90_000.0, 11.0), figures(100_000.0, 10.0))],
            checked: "300,000 calls, all OK".into(),
        }],
        memory: vec![Memory {
            process: "recommendations".into(),
            phase: "gRPC".into(),
            peak_rss: 9_196_000,
        }],
        instructions: vec![
            Instructions {
                process: "marketplace".into(),
                per: "page".into(),
                requests: 40_000,
                per_request: 90_490.4,
                components: vec![
                    ("h2: HTTP/2 frames, HPACK, flow control".into(), 20_000.0),
                    ("askama: rendering".into(), 5_000.0),
                    ("no line tables".into(), 0.01),
                ],
            },
            Instructions {
                process: "recommendations".into(),
                per: "call of a page".into(),
                requests: 40_100,
                per_request: 56_882.0,
                components: vec![("h2: HTTP/2 frames, HPACK, flow control".into(), 15_000.0)],
            },
        ],
        call_instructions: vec![CallInstructions {
            scenario: "Recommend (v1)".into(),
            calls: 20_000,
            service: 49_235.0,
            ceiling: 42_539.0,
        }],
        runtime: vec![
            RuntimeChoice {
                cpus: 2,
                workers: 1,
                connections: 16,
                default: false,
                figures: figures(20_000.0, 50.0),
            },
            RuntimeChoice {
                cpus: 2,
                workers: 2,
                connections: 16,
                default: true,
                figures: figures(15_000.0, 80.0),
            },
        ],
        python: Some(Comparison {
            scenario: "Homepage beside the tutorial's Python services".into(),
            load: "wrk, 16 keep-alive connections".into(),
            service: "ours".into(),
            ceiling: "Flask".into(),
            service_figures: figures(30_000.0, 50.0),
            ceiling_figures: figures(1_000.0, 1_500.0),
            rounds: vec![(figures(30_000.0, 50.0), figures(1_000.0, 1_500.0))],
            checked: "no errors".into(),
        }),
        criterion: None,
        catalog: None,
        targets: vec![Target {
            promise: "Recommend ≥ 0.90× bare tonic req/s".into(),
            measured: "0.90×".into(),
            met: true,
        }],
    }
}

#[test]
fn medians_are_taken_field_by_field() {
    let median = Figures::median(&[figures(3.0, 9.0), figures(1.0, 7.0), figures(2.0, 8.0)]);

    assert_eq!((median.rate, median.cpu_us), (2.0, 8.0));
}

#[test]
fn ratios_are_the_median_of_each_rounds_ratio() {
    let mut comparison = results().comparisons.remove(0);
    // A machine that slows down by half over the run: the ratio of the
    // medians (0.6) would say otherwise; each round says 0.9 and 1.1.
    comparison.rounds = vec![
        (figures(90.0, 11.0), figures(100.0, 10.0)),
        (figures(72.0, 22.0), figures(80.0, 20.0)),
        (figures(45.0, 44.0), figures(50.0, 40.0)),
    ];
    comparison.service_figures = figures(72.0, 22.0);
    comparison.ceiling_figures = figures(80.0, 20.0);

    assert!((comparison.rate_ratio() - 0.9).abs() < 1e-9);
    assert!((comparison.cpu_ratio() - 1.1).abs() < 1e-9);
}

#[test]
fn the_section_has_ratios_memory_and_targets() {
    let md = markdown(&results(), "chart.svg");

    assert_has(
        &md,
        "| Recommend (v1) | recommendations | 90,000 | 500 µs | 1.50 ms | 11.0 µs | 25 % | 0.90×, 1.10× |",
    );
    assert_has(&md, "| recommendations | gRPC | 9.2 MB |");
    assert_has(
        &md,
        "| recommendations | call of a page | 40,100 | 56,882 |",
    );
    assert_has(&md, "| both services | page | | 147,372 |");
    assert_has(
        &md,
        "| Flask | 1,000 | 500 µs | 1.50 ms | 1500.0 µs | 25 % |",
    );
    assert_has(
        &md,
        "Ours serve 30.0× the pages per second, at 30.0× less CPU per page",
    );
    assert_has(&md, "| Recommend ≥ 0.90× bare tonic req/s | 0.90× | yes |");
    assert!(md.contains("![Throughput and CPU per request, service and ceiling](chart.svg)"));
}

#[test]
fn each_runtime_choice_is_set_against_the_best_on_its_cpus_the_default_in_bold() {
    let md = markdown(&results(), "chart.svg");

    assert_has(
        &md,
        "| 2 CPUs | 16 | current-thread | 20,000 | 1.00× | 50.0 µs | 25 % |",
    );
    assert_has(
        &md,
        "| 2 CPUs | 16 | **multi-thread, 2 workers (default)** | 15,000 | 0.75× | 80.0 µs | 25 % |",
    );
}

#[test]
fn instructions_per_call_are_set_against_bare_tonics() {
    let md = markdown(&results(), "chart.svg");

    assert_has(
        &md,
        "| Recommend (v1) | 20,000 | 49,235 | 42,539 | 1.157× |",
    );
}

#[test]
fn the_components_add_up_across_both_services_the_largest_first() {
    let md = markdown(&results(), "chart.svg");

    assert_has(
        &md,
        "| Component (instructions per page) | marketplace | recommendations | both | share |",
    );
    let h2 = md
        .find("| h2: HTTP/2 frames, HPACK, flow control | 20,000 | 15,000 | 35,000 | 87.5 % |")
        .expect("the h2 row, both services summed");
    let askama = md
        .find("| askama: rendering | 5,000 | 0 | 5,000 | 12.5 % |")
        .expect("the askama row, absent from recommendations");
    assert!(h2 < askama, "{md}");
    assert!(!md.contains("| no line tables |"), "{md}");
}

#[test]
fn a_run_of_one_part_shows_only_its_tables() {
    let mut results = results();
    results.comparisons.clear();
    results.memory.clear();
    results.python = None;
    results.runtime.clear();
    let md = markdown(&results, "chart.svg");

    assert!(
        !md.contains("| Scenario |") && !md.contains("chart.svg"),
        "{md}"
    );
    assert!(
        !md.contains("| Process |") && !md.contains("| Services on |"),
        "{md}"
    );
    assert_has(&md, "| Instructions (callgrind) |");
}

#[test]
fn the_chart_is_svg_with_a_bar_per_server_and_panel() {
    let svg = chart(&results());

    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    // Legend (2) + 2 panels × 2 servers.
    assert_eq!(svg.matches("<rect x=").count(), 2 + 4);
    assert!(svg.contains(">90,000<") && svg.contains(">11.0<"), "{svg}");
}
