//! The kill switch through the gateway: halt one beamline or all, resume, who may, and what stays working.
