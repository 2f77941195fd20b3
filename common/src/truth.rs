//! The ground truth of one verification: what really happened, beside the
//! events that describe it. `veriflow simulate` writes one per verification
//! (`<events>.truth.jsonl`); `veriflow train` and `evaluate` read them as
//! labels. A production history would carry confirmed pumping cases in the
//! same shape (`is_fraud`, optionally `attack`), without `p_success`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Text that the simulator writes from constants and readers own.
pub type Label = Cow<'static, str>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthRecord {
    pub verification_id: String,
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default)]
    pub requested_at: String,
    #[serde(default)]
    pub country: String,
    #[serde(default)]
    pub channel: String,
    pub is_fraud: bool,
    /// The attack's shape, for pumping traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<Label>,
    /// `approved` or `expired`.
    #[serde(default)]
    pub outcome: Label,
    #[serde(default)]
    pub approved_at: Option<String>,
    #[serde(default)]
    pub time_to_approve_ms: Option<i64>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub providers: Vec<String>,
    /// True P(approved) had the first attempt gone through each provider, at
    /// request time (the oracle of the routing evaluation).
    #[serde(default)]
    pub p_success: BTreeMap<Label, f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_label_line_reads() {
        let t: TruthRecord =
            serde_json::from_str(r#"{"verification_id":"v1","is_fraud":true}"#).unwrap();
        assert!(t.is_fraud);
        assert!(t.p_success.is_empty());
        let back: TruthRecord = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
