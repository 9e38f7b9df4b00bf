//! Everything about calling a service over gRPC, from the facade a typed
//! client is built on down to the wire:
//!
//! - [`upstream`]: a service called through its replicas ([`Upstream`]):
//!   discovery, one layered channel per replica, the pool, retries and
//!   per-replica metrics, behind one `call`;
//! - [`discovery`]: the replicas' addresses, from DNS or a hosts file;
//! - [`pool`]: one channel per replica, the less busy of the next two,
//!   outlier ejection, health checks and spares ([`ReplicaPool`]);
//! - [`retry`]: at most one more attempt on another replica, for calls that
//!   may run twice, within the deadline and the [`retry_budget`];
//! - [`replica_metrics`]: calls by replica and status, replicas by state;
//! - [`deadline`]: every call's deadline, announced as `grpc-timeout`;
//! - [`channel`]: one HTTP/2 connection to one replica ([`H2Channel`]).

pub mod channel;
pub mod deadline;
pub mod discovery;
pub mod pool;
pub mod replica_metrics;
pub mod retry;
pub mod retry_budget;
pub mod upstream;

pub use channel::{ChannelSettings, ClientTls, EAGER_BYTES, H2Body, H2Channel};
pub(crate) use deadline::deadline_exceeded;
pub use deadline::{CallDeadline, Deadline, DeadlineBody, DeadlineFuture, DeadlineLayer};
pub use discovery::Resolver;
pub use pool::{Census, Ejection, Member, Picked, ReplicaPool};
pub use replica_metrics::{ReplicaCallsFamily, ReplicaLabels, ReplicaStates};
pub use retry::{Attempt, Retry, RetryPolicy, replica_failed};
pub use retry_budget::RetryBudget;
pub use upstream::{Discovery, RpcChannel, Upstream, UpstreamSettings};
