//! The observer around stand-in inner services: what it writes to the access log, and what it
//! records in the metrics.

mod access_log;
mod metrics;
