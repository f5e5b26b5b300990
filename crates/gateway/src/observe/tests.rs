//! The observer around stand-in inner services: what it writes to the access log, what it
//! records in the metrics, and what it records of refusals by halt or lock and of Fleet RPCs.

mod access_log;
mod metrics;
mod refusals;
