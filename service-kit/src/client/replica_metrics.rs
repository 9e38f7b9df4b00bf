//! The metrics of calls by replica: a counter per replica and status code,
//! and a gauge of the replicas by state, counted from the pool at each
//! scrape. Both are bounded: a replica's series go when it leaves the pool,
//! and the gauge has three series whatever the number of replicas.

use std::net::SocketAddr;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{MetricType, counter::Counter, family::Family, gauge::ConstGauge},
};
use tonic::Code;

use super::ReplicaPool;
use crate::metrics::{ByCode, code_name};

/// Labels of the calls made to one replica (`server_address` and
/// `server_port` as the OpenTelemetry conventions name them, and never
/// `endpoint`, which the Prometheus Operator adds to every target).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    server_address: String,
    server_port: u16,
    rpc_response_status_code: &'static str,
}

impl ReplicaLabels {
    /// The series of calls to `addr` that ended with `code`.
    pub fn new(addr: SocketAddr, code: Code) -> Self {
        Self {
            server_address: addr.ip().to_string(),
            server_port: addr.port(),
            rpc_response_status_code: code_name(code),
        }
    }
}

/// The family of calls by replica and status code.
pub type ReplicaCallsFamily = Family<ReplicaLabels, Counter>;

/// One replica's call counters, one per status code, each looked up in the
/// family on its first call and kept: a call then counts with one atomic
/// add, not a label set built (its address a new `String`), hashed and
/// looked up under the family's lock.
///
/// They go with the replica when it leaves the pool, when [`forget`]
/// removes its series from the family; a call still in flight on it then
/// counts nowhere rather than bringing a departed replica's series back.
#[derive(Debug)]
pub(crate) struct ReplicaCalls {
    family: ReplicaCallsFamily,
    addr: SocketAddr,
    by_code: ByCode<Counter>,
}

impl ReplicaCalls {
    pub(crate) fn new(family: ReplicaCallsFamily, addr: SocketAddr) -> Self {
        Self {
            family,
            addr,
            by_code: Default::default(),
        }
    }

    /// Counts a call that ended with `code`.
    pub(crate) fn count(&self, code: Code) {
        self.by_code
            .get_or_init(code, || {
                self.family
                    .get_or_create(&ReplicaLabels::new(self.addr, code))
                    .clone()
            })
            .inc();
    }
}

/// Removes the series of replicas that left the pool, so that rollouts and
/// scaling do not grow the scrape without end.
pub(crate) fn forget(family: &ReplicaCallsFamily, left: &[SocketAddr]) {
    for addr in left {
        for code in ALL_CODES {
            family.remove(&ReplicaLabels::new(*addr, code));
        }
    }
}

/// A gauge of replicas by state, counted from the pool at each scrape:
/// in rotation, out of it, and spare. Three series whatever the number of
/// replicas.
pub struct ReplicaStates<C> {
    pub(crate) pool: ReplicaPool<C>,
    /// The gauge's name and help.
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
}

impl<C> std::fmt::Debug for ReplicaStates<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaStates")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<C: Send + Sync + 'static> Collector for ReplicaStates<C> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let census = self.pool.census();
        let mut family =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        for (state, count) in [
            ("in_rotation", census.in_rotation),
            ("out_of_rotation", census.out_of_rotation),
            ("spare", census.spare),
        ] {
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            ConstGauge::new(count).encode(family.encode_family(&[("state", state)])?)?;
        }
        Ok(())
    }
}

/// Every gRPC status code, for removing a replica's series.
const ALL_CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];
