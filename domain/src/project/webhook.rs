//! Webhooks: project-owned subscriptions to the project's activity.
//!
//! They live in the project aggregate so the per-project limit and "only in a live project"
//! are checked in the same decision as everything else. The secret that signs deliveries is
//! not part of the events (an immutable log cannot forget it); the events only record
//! whether one is set.

use serde::{Deserialize, Serialize};

use super::{Project, ProjectCommand, ProjectEvent};
use crate::activity;
use crate::error::{DomainError, Entity};
use crate::ids::check_entity_id;
use crate::names::{MAX_DESCRIPTION_CHARS, check_len};

/// Longest accepted target URL.
pub const MAX_URL_CHARS: usize = 2_048;
/// Longest reason stored when a webhook is switched off.
pub const MAX_DISABLED_REASON_CHARS: usize = 1_024;

/// A webhook's configuration, as events carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookConfig {
    /// Where deliveries are POSTed.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Activity action types that fire it, distinct and sorted.
    pub triggers: Vec<String>,
    /// Whether it fires at all.
    pub enabled: bool,
    /// Whether deliveries are signed with a secret.
    pub has_secret: bool,
}

/// Changes asked of a webhook (`None` keeps the value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookChanges {
    /// New URL.
    pub url: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New triggers.
    pub triggers: Option<Vec<String>>,
    /// Switch on or off (switching on clears the disabled reason).
    pub enabled: Option<bool>,
    /// Whether a secret is now set (`Some` when the caller changed it).
    pub has_secret: Option<bool>,
}

/// A webhook as decisions and read models see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Configuration.
    pub config: WebhookConfig,
    /// Why it was switched off automatically, until it is switched on again.
    pub disabled_reason: Option<String>,
}

/// Checks a target URL's shape: `http` or `https`, a host, no spaces. Whether the host is
/// an allowed (non-private) address is decided where DNS can be asked, not here.
pub fn check_url(url: &str) -> Result<String, DomainError> {
    let url = url.trim();
    check_len("url", url, MAX_URL_CHARS)?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| DomainError::invalid("url", "must be an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DomainError::invalid(
            "url",
            "must name a host and contain no spaces",
        ));
    }
    Ok(url.to_owned())
}

/// Validates triggers: at least one, each a known action type; returns them distinct and
/// sorted, so equal sets compare equal.
pub fn check_triggers(triggers: Vec<String>) -> Result<Vec<String>, DomainError> {
    let mut triggers: Vec<String> = triggers.into_iter().map(|t| t.trim().to_owned()).collect();
    triggers.sort();
    triggers.dedup();
    if triggers.is_empty() {
        return Err(DomainError::invalid(
            "triggers",
            "at least one trigger is required",
        ));
    }
    if let Some(bad) = triggers.iter().find(|t| !activity::is_trigger(t)) {
        return Err(DomainError::invalid(
            "triggers",
            format!("unknown trigger {bad:?}"),
        ));
    }
    Ok(triggers)
}

fn checked(config: WebhookConfig) -> Result<WebhookConfig, DomainError> {
    check_len("description", &config.description, MAX_DESCRIPTION_CHARS)?;
    Ok(WebhookConfig {
        url: check_url(&config.url)?,
        triggers: check_triggers(config.triggers)?,
        ..config
    })
}

fn webhook<'p>(p: &'p Project, id: &str) -> Result<&'p Webhook, DomainError> {
    p.webhooks
        .get(id)
        .ok_or_else(|| DomainError::not_found(Entity::Webhook, id))
}

pub(super) fn decide(
    p: &Project,
    command: ProjectCommand,
) -> Result<Vec<ProjectEvent>, DomainError> {
    let project_id = p.id.clone();
    match command {
        ProjectCommand::CreateWebhook {
            webhook_id,
            config,
            max_per_project,
        } => {
            check_entity_id("id", &webhook_id)?;
            if p.used_ids.contains(&webhook_id) {
                return Err(DomainError::AlreadyExists {
                    kind: Entity::Webhook,
                    id: webhook_id,
                });
            }
            if p.webhooks.len() >= max_per_project {
                return Err(DomainError::LimitReached {
                    what: "webhooks",
                    max: max_per_project,
                });
            }
            Ok(vec![ProjectEvent::WebhookCreated {
                project_id,
                webhook_id,
                config: checked(config)?,
            }])
        }
        ProjectCommand::UpdateWebhook {
            webhook_id,
            changes,
        } => {
            let current = webhook(p, &webhook_id)?;
            let before = &current.config;
            let config = checked(WebhookConfig {
                url: changes.url.unwrap_or_else(|| before.url.clone()),
                description: changes
                    .description
                    .unwrap_or_else(|| before.description.clone()),
                triggers: changes.triggers.unwrap_or_else(|| before.triggers.clone()),
                // Not given: unchanged.
                enabled: changes.enabled.unwrap_or(before.enabled),
                has_secret: changes.has_secret.unwrap_or(before.has_secret),
            })?;
            Ok(vec![ProjectEvent::WebhookUpdated {
                project_id,
                webhook_id,
                config,
            }])
        }
        ProjectCommand::DeleteWebhook { webhook_id } => {
            webhook(p, &webhook_id)?;
            Ok(vec![ProjectEvent::WebhookDeleted {
                project_id,
                webhook_id,
            }])
        }
        ProjectCommand::DisableWebhook { webhook_id, reason } => {
            let current = webhook(p, &webhook_id)?;
            if !current.config.enabled {
                // Already off (by hand or by an earlier failure): nothing happens.
                return Ok(Vec::new());
            }
            let reason: String = reason.chars().take(MAX_DISABLED_REASON_CHARS).collect();
            Ok(vec![ProjectEvent::WebhookDisabled {
                project_id,
                webhook_id,
                reason,
            }])
        }
        ProjectCommand::RedeliverWebhook {
            webhook_id,
            delivery_id,
        } => {
            webhook(p, &webhook_id)?;
            if delivery_id.is_empty() || delivery_id.len() > 64 {
                return Err(DomainError::invalid(
                    "deliveryId",
                    "must be 1 to 64 characters",
                ));
            }
            Ok(vec![ProjectEvent::WebhookRedeliveryRequested {
                project_id,
                webhook_id,
                delivery_id,
            }])
        }
        _ => Err(DomainError::invalid("command", "not a webhook command")),
    }
}

pub(super) fn apply(p: &mut Project, event: &ProjectEvent) {
    match event {
        ProjectEvent::WebhookCreated {
            webhook_id, config, ..
        } => {
            p.used_ids.insert(webhook_id.clone());
            p.webhooks.insert(
                webhook_id.clone(),
                Webhook {
                    config: config.clone(),
                    disabled_reason: None,
                },
            );
        }
        ProjectEvent::WebhookUpdated {
            webhook_id, config, ..
        } => {
            if let Some(w) = p.webhooks.get_mut(webhook_id) {
                if config.enabled {
                    w.disabled_reason = None;
                }
                w.config = config.clone();
            }
        }
        ProjectEvent::WebhookDeleted { webhook_id, .. } => {
            p.webhooks.remove(webhook_id);
        }
        ProjectEvent::WebhookDisabled {
            webhook_id, reason, ..
        } => {
            if let Some(w) = p.webhooks.get_mut(webhook_id) {
                w.config.enabled = false;
                w.disabled_reason = Some(reason.clone());
            }
        }
        _ => {}
    }
}

/// The start of every refusal of a target address (the delivery worker recognises its own
/// resolver's refusals by it).
pub const REFUSED_TARGET: &str = "target address is not allowed";

/// Whether `ip` is somewhere a webhook must not reach by default: loopback, private,
/// link-local, carrier-grade NAT, unspecified, broadcast, multicast, documentation ranges,
/// unique-local IPv6, and IPv4 addresses embedded in IPv6.
pub fn is_internal(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
        }
        std::net::IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(std::net::IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Refuses a URL whose host is an internal IP literal (names are checked at resolution).
pub fn check_literal_target(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(v4)) => std::net::IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => std::net::IpAddr::V6(v6),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err("URL has no host".to_owned()),
    };
    if !allow_private && is_internal(ip) {
        return Err(format!("{REFUSED_TARGET}: {ip} is internal"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{ProjectState, decide as decide_project, fold};

    fn project() -> ProjectState {
        let events = decide_project(
            &ProjectState::Initial,
            ProjectCommand::Create {
                id: "aaaaaaaaaa".into(),
                name: "p".into(),
                description: None,
                visibility: crate::policy::Visibility::Private,
                owner_user_id: "bbbbbbbbbb".into(),
                default_model_id: None,
            },
        )
        .unwrap();
        fold(&events)
    }

    fn config(url: &str, triggers: &[&str]) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            description: String::new(),
            triggers: triggers.iter().map(|t| (*t).to_owned()).collect(),
            enabled: true,
            has_secret: true,
        }
    }

    fn run(state: ProjectState, command: ProjectCommand) -> Result<ProjectState, DomainError> {
        let events = decide_project(&state, command)?;
        Ok(events.iter().fold(state, crate::project::evolve))
    }

    #[test]
    fn create_checks_url_triggers_id_and_limit() {
        let s = project();
        let create = |id: &str, c: WebhookConfig, max| ProjectCommand::CreateWebhook {
            webhook_id: id.into(),
            config: c,
            max_per_project: max,
        };
        assert!(matches!(
            decide_project(
                &s,
                create("cccccccccc", config("ftp://x", &["commit_create"]), 5)
            ),
            Err(DomainError::Invalid { field: "url", .. })
        ));
        assert!(matches!(
            decide_project(
                &s,
                create("cccccccccc", config("http:///x", &["commit_create"]), 5)
            ),
            Err(DomainError::Invalid { field: "url", .. })
        ));
        assert!(matches!(
            decide_project(&s, create("cccccccccc", config("http://x", &[]), 5)),
            Err(DomainError::Invalid {
                field: "triggers",
                ..
            })
        ));
        assert!(matches!(
            decide_project(&s, create("cccccccccc", config("http://x", &["nope"]), 5)),
            Err(DomainError::Invalid {
                field: "triggers",
                ..
            })
        ));
        let s = run(
            s,
            create(
                "cccccccccc",
                config(
                    "http://x/hook",
                    &["commit_create", "branch_create", "commit_create"],
                ),
                2,
            ),
        )
        .unwrap();
        let hook = &s.project().unwrap().webhooks["cccccccccc"];
        assert_eq!(hook.config.triggers, vec!["branch_create", "commit_create"]);
        assert!(matches!(
            decide_project(
                &s,
                create("cccccccccc", config("http://x", &["commit_create"]), 5)
            ),
            Err(DomainError::AlreadyExists { .. })
        ));
        let s = run(
            s,
            create("dddddddddd", config("http://y", &["commit_create"]), 2),
        )
        .unwrap();
        assert_eq!(
            decide_project(
                &s,
                create("eeeeeeeeee", config("http://z", &["commit_create"]), 2)
            ),
            Err(DomainError::LimitReached {
                what: "webhooks",
                max: 2
            })
        );
    }

    #[test]
    fn disable_records_a_reason_and_enabling_clears_it() {
        let s = run(
            project(),
            ProjectCommand::CreateWebhook {
                webhook_id: "cccccccccc".into(),
                config: config("https://x", &["commit_create"]),
                max_per_project: 100,
            },
        )
        .unwrap();
        let s = run(
            s,
            ProjectCommand::DisableWebhook {
                webhook_id: "cccccccccc".into(),
                reason: "failing for 5 days".into(),
            },
        )
        .unwrap();
        let hook = &s.project().unwrap().webhooks["cccccccccc"];
        assert!(!hook.config.enabled);
        assert_eq!(hook.disabled_reason.as_deref(), Some("failing for 5 days"));
        // A second disable is a no-op, not an error.
        assert_eq!(
            decide_project(
                &s,
                ProjectCommand::DisableWebhook {
                    webhook_id: "cccccccccc".into(),
                    reason: "again".into()
                }
            ),
            Ok(vec![])
        );
        let s = run(
            s,
            ProjectCommand::UpdateWebhook {
                webhook_id: "cccccccccc".into(),
                changes: WebhookChanges {
                    enabled: Some(true),
                    ..WebhookChanges::default()
                },
            },
        )
        .unwrap();
        let hook = &s.project().unwrap().webhooks["cccccccccc"];
        assert!(hook.config.enabled);
        assert_eq!(hook.disabled_reason, None);
        assert_eq!(hook.config.url, "https://x");
        let s = run(
            s,
            ProjectCommand::DeleteWebhook {
                webhook_id: "cccccccccc".into(),
            },
        )
        .unwrap();
        assert!(s.project().unwrap().webhooks.is_empty());
        assert!(matches!(
            decide_project(
                &s,
                ProjectCommand::RedeliverWebhook {
                    webhook_id: "cccccccccc".into(),
                    delivery_id: "x".into()
                }
            ),
            Err(DomainError::NotFound { .. })
        ));
    }
}
