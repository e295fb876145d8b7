//! The SCIM sink's own cost: batches of 1000 user creates through
//! `ScimSink::apply` against `examples/scim_null.rs` (a loopback endpoint
//! that accepts everything), so muster is measured, not an LMS. Criterion
//! reports operations per second (`Elements`).
//!
//! `cargo bench --bench scim`

use std::net::TcpListener;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use muster::config::{BulkMode, ScimConfig, Secret, SegmentMapping};
use muster::model::field_name;
use muster::plan::Action;
use muster::profile::ObjectKind;
use muster::sink::{Operation, ScimSink, Sink, Value};

#[path = "../examples/scim_null.rs"]
#[allow(dead_code)]
mod scim_null;

fn config(url: String, bulk: BulkMode) -> ScimConfig {
    ScimConfig {
        url,
        token: Secret::new("bench-token".into()),
        senders: 4,
        writes_per_second: None,
        max_attempts: 3,
        backoff_ms: 100,
        max_backoff_ms: 1000,
        connect_timeout_ms: 5000,
        timeout_ms: 30_000,
        bulk,
        user_name: "email".into(),
        invite_attribute: muster::sink::scim::INVITE_ATTRIBUTE.into(),
        segments: SegmentMapping::Groups,
        create_missing_groups: true,
        attributes: Vec::new(),
    }
}

/// 1000 creates with the fields of a Winningtemp user (no memberships).
fn batch() -> Vec<Operation> {
    let t = |s: String| Value::Text(s);
    (0..1000u64)
        .map(|i| Operation {
            op: i,
            kind: ObjectKind::User,
            action: Action::Create,
            key: format!("E{i:07}"),
            fields: vec![
                (field_name("external_id"), t(format!("E{i:07}"))),
                (field_name("first_name"), t("Zoë".into())),
                (field_name("last_name"), t("van der Berg".into())),
                (
                    field_name("email"),
                    t(format!("zoe.vanderberg.{i}@example.com")),
                ),
                (field_name("phone"), t("+32 478 83 45 28".into())),
                (field_name("title"), t("Head of \"Fun\"".into())),
                (field_name("birth_date"), t("1990-01-02".into())),
                (field_name("employed_since"), t("2019-01-10".into())),
                (field_name("gender"), t("F".into())),
                (field_name("language"), t("nl-BE".into())),
                (field_name("status"), t("active".into())),
            ],
            invite: true,
            reactivate: false,
            lms_id: None,
            ids: Vec::new(),
            fresh: true,
        })
        .collect()
}

fn scim(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || scim_null::serve(listener, Duration::ZERO));
    let url = format!("http://127.0.0.1:{port}/v2");
    let batch = batch();
    let mut g = c.benchmark_group("scim");
    g.throughput(Throughput::Elements(batch.len() as u64));
    for (name, mode) in [("bulk", BulkMode::Auto), ("single", BulkMode::Never)] {
        let mut sink = ScimSink::open(&config(url.clone(), mode)).unwrap();
        g.bench_function(format!("apply_1000_creates_{name}"), |b| {
            b.iter(|| {
                let acks = sink.apply(&batch).unwrap();
                assert_eq!(acks.len(), batch.len());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, scim);
criterion_main!(benches);
