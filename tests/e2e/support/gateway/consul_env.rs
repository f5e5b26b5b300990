//! How a test points the gateway at Consul other than `--consul HOST:PORT` of a plain
//! registry: any `--consul` address (`https://…`) and Consul's client variables in its
//! environment (`CONSUL_CACERT`, `CONSUL_HTTP_TOKEN`, …).

use super::GatewayBuilder;

impl GatewayBuilder {
    /// `--consul ADDR` (host:port or URL) instead of the registry's plain address.
    pub fn consul(mut self, addr: impl ToString) -> Self {
        self.consul = addr.to_string();
        self
    }

    /// Set an environment variable of the gateway (CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN are
    /// otherwise removed).
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}
