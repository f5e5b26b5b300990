//! The fleet catalog: ListBeamlines, WatchFleet, and `agents --capabilities`.
