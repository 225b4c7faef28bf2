//! Payloads for encoder and emitter tests: host metadata, a payload, and a walk over its
//! views as an emitter sees them (no blacklist).

use std::sync::Arc;

use badger_api::matcher::Matcher;
use badger_api::plugin::{Batch, PayloadView};
use badger_api::point::{HostMeta, Payload, Point};

/// Host metadata with the given parts; `ipv4` is `10.0.0.1`, `ipv6` empty.
pub fn meta(datacenter: &str, region: &str, zone: &str, cluster: &str, hostname: &str) -> Arc<HostMeta> {
    Arc::new(HostMeta {
        datacenter: datacenter.into(),
        region: region.into(),
        zone: zone.into(),
        cluster: cluster.into(),
        hostname: hostname.into(),
        ipv4: "10.0.0.1".into(),
        ipv6: String::new(),
    })
}

/// One payload of `points` at `timestamp`.
pub fn payload(meta: Arc<HostMeta>, timestamp: i64, points: Vec<Point>) -> Arc<Payload> {
    Arc::new(Payload { meta, timestamp, points })
}

/// Calls `f` with each payload as an emitter sees it (through an empty blacklist).
pub fn each_view(payloads: &[Arc<Payload>], mut f: impl FnMut(&PayloadView<'_>)) {
    let none = Matcher::default();
    for view in Batch::new(payloads, &none).payloads() {
        f(&view);
    }
}
