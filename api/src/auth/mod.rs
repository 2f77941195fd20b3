//! Who is calling, for which tenant, and what they may do.
//!
//! Every credential scheme (API keys today; OIDC, SAML and LDAP later) ends in the
//! same place: a [`Principal`] plus the tenant the request is scoped to, put into
//! the request as a [`Caller`]. Handlers never look at headers; they ask the
//! caller for a permission and get the tenant id to act on, so adding a scheme
//! means adding one branch to [`middleware::authenticate`] and nothing else.

pub mod api_key;
pub mod key_cache;
pub mod middleware;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::Problem;

/// A tenant member's role; permissions follow from it ([`Role::allows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything within the tenant, including its settings and API keys.
    Admin,
    /// Reads data and analytics (SQL, KPIs, usage).
    Analyst,
    /// Integrates: templates, rendering, route/score calls, webhooks.
    Developer,
    /// Reads settings, templates and usage.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Analyst => "analyst",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "analyst" => Some(Role::Analyst),
            "developer" => Some(Role::Developer),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// The one table of who may do what.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Developer => matches!(
                permission,
                ReadTenant
                    | ReadTemplates
                    | ManageTemplates
                    | RenderTemplates
                    | ReadUsage
                    | ReadWebhooks
                    | ManageWebhooks
                    | Score
            ),
            Role::Analyst => matches!(
                permission,
                ReadTenant | ReadTemplates | ReadUsage | ReadWebhooks | QuerySql
            ),
            Role::Viewer => matches!(
                permission,
                ReadTenant | ReadTemplates | ReadUsage | ReadWebhooks
            ),
        }
    }
}

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadTenant,
    ManageTenant,
    ManageKeys,
    ReadTemplates,
    ManageTemplates,
    RenderTemplates,
    ReadUsage,
    /// Endpoints and their attempts (never secrets).
    ReadWebhooks,
    /// Create, change and delete endpoints; secrets; replays and tests.
    ManageWebhooks,
    /// `POST /v1/route` and `/v1/score`.
    Score,
    /// `POST /v1/sql`: the tenant's history, read-only.
    QuerySql,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ReadTenant => "tenant:read",
            Permission::ManageTenant => "tenant:manage",
            Permission::ManageKeys => "keys:manage",
            Permission::ReadTemplates => "templates:read",
            Permission::ManageTemplates => "templates:manage",
            Permission::RenderTemplates => "templates:render",
            Permission::ReadUsage => "usage:read",
            Permission::ReadWebhooks => "webhooks:read",
            Permission::ManageWebhooks => "webhooks:manage",
            Permission::Score => "scoring:call",
            Permission::QuerySql => "sql:query",
        }
    }

    pub const ALL: [Permission; 11] = [
        Permission::ReadTenant,
        Permission::ManageTenant,
        Permission::ManageKeys,
        Permission::ReadTemplates,
        Permission::ManageTemplates,
        Permission::RenderTemplates,
        Permission::ReadUsage,
        Permission::ReadWebhooks,
        Permission::ManageWebhooks,
        Permission::Score,
        Permission::QuerySql,
    ];
}

/// The authenticated party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator (`api.operator_token`): manages tenants, may act
    /// within any tenant it names.
    Operator,
    /// A tenant's API key.
    ApiKey {
        key_id: String,
        tenant_id: String,
        role: Role,
    },
}

/// The request's principal and the tenant it is scoped to.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// From the `Host` domain, else the key's tenant, else (operator only) the
    /// `veriflow-tenant` header.
    pub tenant: Option<String>,
}

impl Caller {
    pub fn is_operator(&self) -> bool {
        self.principal == Principal::Operator
    }

    /// The tenant to act on, if the caller may do `permission` there.
    pub fn tenant_for(&self, permission: Permission) -> Result<&str, Problem> {
        let tenant = self.tenant.as_deref().ok_or_else(|| {
            Problem::bad_request(
                "no tenant in scope: the operator names one with a tenant domain as Host \
                 or the `veriflow-tenant` header",
            )
        })?;
        self.check(permission)?;
        Ok(tenant)
    }

    /// Whether the caller may do `permission` on tenant `id` (a path parameter).
    /// Another tenant's id answers 404, so ids cannot be probed.
    pub fn tenant_by_id(&self, id: &str, permission: Permission) -> Result<(), Problem> {
        match &self.principal {
            Principal::Operator => Ok(()),
            Principal::ApiKey { tenant_id, .. } if tenant_id == id => self.check(permission),
            Principal::ApiKey { .. } => Err(Problem::not_found(format!("no tenant {id:?}"))),
        }
    }

    pub fn require_operator(&self) -> Result<(), Problem> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(Problem::forbidden(
                "this operation needs the operator token (api.operator_token)",
            ))
        }
    }

    fn check(&self, permission: Permission) -> Result<(), Problem> {
        match &self.principal {
            Principal::Operator => Ok(()),
            Principal::ApiKey { role, .. } if role.allows(permission) => Ok(()),
            Principal::ApiKey { role, .. } => Err(Problem::forbidden(format!(
                "role {:?} does not have permission {:?}",
                role.as_str(),
                permission.as_str()
            ))),
        }
    }

    /// Permissions the caller holds (for `whoami`).
    pub fn permissions(&self) -> Vec<&'static str> {
        Permission::ALL
            .iter()
            .filter(|p| self.check(**p).is_ok())
            .map(|p| p.as_str())
            .collect()
    }

    /// The rate-limit bucket: one per key, one for the operator.
    pub fn limit_key(&self) -> String {
        match &self.principal {
            Principal::Operator => "operator".into(),
            Principal::ApiKey { key_id, .. } => key_id.clone(),
        }
    }
}
