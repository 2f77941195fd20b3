//! A tenant's stored settings: one JSON document per tenant in the store,
//! read by the tenants routes (to show and change it) and by scoring (its
//! thresholds and provider policy). The schema lives here, apart from the
//! handlers, so both read it through one type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use veriflow_common::scoring::{FraudThresholds, ProviderPolicy, ScoringSettings};

use crate::store::TenantRow;

/// How end-user facing output (rendered templates, hosted pages) is branded.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// Shown to end users; defaults to the tenant's name.
    #[schema(max_length = 200, pattern = "^\\S(.*\\S)?$")]
    pub company_name: Option<String>,
    #[schema(max_length = 2048, pattern = "^https?://[^\\s<>\"]+$")]
    pub logo_url: Option<String>,
    /// `#RRGGBB`.
    #[schema(pattern = "^#[0-9a-fA-F]{6}$")]
    pub primary_color: Option<String>,
    /// CSS for hosted pages; `<` and `>` are refused so it cannot close its
    /// `<style>` element.
    #[schema(max_length = 16384, pattern = "^[^<>]*$")]
    pub custom_css: Option<String>,
}

/// The stored document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantSettings {
    pub branding: Branding,
    pub feature_flags: BTreeMap<String, bool>,
    pub fraud_thresholds: Option<FraudThresholds>,
    pub providers: ProviderPolicy,
}

impl TenantSettings {
    /// The stored document of `row`; an error when it is corrupt.
    pub fn of(row: &TenantRow) -> Result<TenantSettings, serde_json::Error> {
        serde_json::from_str(&row.settings)
    }

    pub fn scoring(&self) -> ScoringSettings {
        ScoringSettings {
            fraud_thresholds: self.fraud_thresholds,
            providers: self.providers.clone(),
        }
    }
}
