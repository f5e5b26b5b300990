//! The status page at control-room scale, rendered by headless Chromium.
