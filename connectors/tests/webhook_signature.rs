//! Our Standard Webhooks signatures, verified by the stock third-party libraries
//! (Python `standardwebhooks` and `svix`, installed by scripts/setup.sh), including
//! during a secret rotation (two signatures in one header).

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use veriflow_connectors::webhooks::signature::{Secret, signature_header};

const VERIFY: &str = r#"
import json, sys
import standardwebhooks
from svix.webhooks import Webhook as SvixWebhook
secret, msg_id, ts, sig, body = sys.argv[1:6]
headers = {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig}
standardwebhooks.Webhook(secret).verify(body, headers)
SvixWebhook(secret).verify(body, headers)
try:
    standardwebhooks.Webhook(secret).verify(body + " ", headers)
    print("tampered body accepted"); sys.exit(3)
except Exception:
    pass
print("verified")
"#;

fn verify_with_python(secret: &str, id: &str, ts: i64, sig: &str, body: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", VERIFY, secret, id, &ts.to_string(), sig, body])
        .output()
        .expect("python3 with standardwebhooks and svix (scripts/setup.sh installs them)");
    assert!(
        out.status.success(),
        "the stock library refused our signature: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn stock_libraries_verify_our_signatures_including_during_rotation() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = r#"{"type":"verification.approved","timestamp":"2026-11-25T00:00:00Z","data":{"verification_id":"v-1","country":"BR","note":"ünïcødé ✓"}}"#;
    let (old, new) = (Secret::generate(), Secret::generate());
    let id = "msg_2p4Xq9yT0rVkLmN";
    let single = signature_header(std::slice::from_ref(&new), id, now, body.as_bytes());
    assert_eq!(
        verify_with_python(&new.expose(), id, now, &single, body),
        "verified"
    );
    // Rotation: both signatures sent; a receiver holding either secret accepts.
    let both = signature_header(&[old.clone(), new.clone()], id, now, body.as_bytes());
    assert_eq!(
        verify_with_python(&old.expose(), id, now, &both, body),
        "verified"
    );
    assert_eq!(
        verify_with_python(&new.expose(), id, now, &both, body),
        "verified"
    );
}
