//! Beamline locks through the gateway: refusal for others, the holder allowed, expiry, the check-and-set race, safety breaking a lock.
