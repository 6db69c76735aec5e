//! `/keys`: an idempotency record looked up by tenant and key.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Html;
use bgops_storage::validate_address;
use maud::html;

use crate::view::{Base, badge, layout, opt_time, param, time};
use crate::{AppState, BoardError};

pub(crate) async fn page(
    State(state): State<AppState>,
    base: Base,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>, BoardError> {
    let tenant = param(query.get("tenant"));
    let key = param(query.get("key"));
    let record = match (tenant, key) {
        (Some(tenant), Some(key)) => {
            validate_address(tenant, key).map_err(|e| BoardError::BadRequest(e.to_string()))?;
            Some(state.storage.get_idempotency(tenant, key).await?)
        }
        _ => None,
    };
    let body = html! {
        form.filters method="get" action=(base.to("/keys")) {
            label { "Tenant " input name="tenant" value=(tenant.unwrap_or("")) required; }
            label { "Key " input name="key" value=(key.unwrap_or("")) required size="40"; }
            button type="submit" { "Look up" }
        }
        @match &record {
            None => { p.empty { "Give a tenant and the key as stored (the HTTP middleware stores scope-derived keys: see docs/operations.md)." } }
            Some(None) => { p.empty #not-found { "No live record under this tenant and key." } }
            Some(Some(r)) => {
                dl.facts #record {
                    dt { "Tenant" } dd { (r.tenant_id) }
                    dt { "Key" } dd.mono { (r.key) }
                    dt { "Operation" } dd { (r.operation_type) }
                    dt { "User" } dd { (r.user_id.as_deref().unwrap_or("–")) }
                    dt { "Status" } dd { (badge(r.status.as_str())) }
                    dt { "Created" } dd { (time(r.created_at)) }
                    dt { "Expires" } dd { (time(r.expires_at)) }
                    dt { "Lease expires" } dd { (opt_time(r.lease_expires_at)) }
                    dt { "Completed" } dd { (opt_time(r.completed_at)) }
                    dt { "Fingerprint" } dd.mono { (r.fingerprint.as_deref().unwrap_or("–")) }
                    dt { "Result" } dd { pre { (r.result.as_ref().map_or_else(|| "–".into(), |v| serde_json::to_string_pretty(v).unwrap_or_default())) } }
                    @if let Some(e) = &r.error { dt { "Error" } dd.error { (e) } }
                    dt { "Payload" } dd { (r.payload.as_ref().map_or_else(|| "–".to_owned(), |p| format!("{} bytes", p[..].len()))) }
                }
            }
        }
    };
    Ok(layout(&base, "Idempotency keys", None, &body))
}
