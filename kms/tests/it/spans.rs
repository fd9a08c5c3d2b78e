//! Release handlers run in a `release` span whose `app_id` field is recorded once the
//! caller's evidence verified, so every log line of a release names the app.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::Layer;

use crate::world::World;

/// `(span name, field, value)` of every field recorded on a span.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<(String, String, String)>>>);

struct Fields<'a>(&'a str, &'a Recorded);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.1 .0.lock().unwrap().push((
            self.0.to_owned(),
            field.name().to_owned(),
            format!("{value:?}"),
        ));
    }
}

impl<S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S> for Recorded {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        attrs.record(&mut Fields(attrs.metadata().name(), self));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            values.record(&mut Fields(span.name(), self));
        }
    }
}

impl Recorded {
    fn values(&self, span: &str, field: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, f, _)| s == span && f == field)
            .map(|(_, _, v)| v.clone())
            .collect()
    }
}

// current_thread: the subscriber is the thread's default, and every task of the test
// (the node's included) runs on this thread.
#[tokio::test(flavor = "current_thread")]
async fn release_spans_record_the_callers_app_id_once_its_evidence_verified() {
    let recorded = Recorded::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorded.clone()));
    let (w, kms) = World::serving(0xD3).await;
    let guest = w.guest(0x73);
    let cert = guest.cert();

    kms.node
        .release_app_key(Some(&cert.cert_der), &Default::default())
        .await
        .unwrap();
    assert_eq!(recorded.values("release", "kind"), vec!["\"app_key\""]);
    let app_id = format!("0x{}", w.app_id.to_hex());
    let ids = recorded.values("release", "app_id");
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(ids[0].to_lowercase(), app_id);

    // Without a certificate nothing verified: the field stays empty.
    kms.node
        .release_app_key(None, &Default::default())
        .await
        .unwrap_err();
    assert_eq!(recorded.values("release", "app_id").len(), 1);
    assert_eq!(recorded.values("release", "kind").len(), 2);
    kms.stop().await;
}
