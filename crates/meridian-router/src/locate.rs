//! Where a client stands, as the router asks it.

use std::net::IpAddr;

use meridian_core::route::ClientPlace;

/// Places a client address on the map. Called on the request path, so it must answer from
/// memory.
pub trait Locate: Send + Sync + 'static {
    /// Where `ip` is; a locator that knows nothing places the client in the router's region.
    fn locate(&self, ip: IpAddr) -> ClientPlace;
}

impl<F> Locate for F
where
    F: Fn(IpAddr) -> ClientPlace + Send + Sync + 'static,
{
    fn locate(&self, ip: IpAddr) -> ClientPlace {
        self(ip)
    }
}
