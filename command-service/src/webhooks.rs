//! Wiring for the webhook delivery worker: its settings, and the command path it uses to
//! switch off a webhook that keeps failing.

use domain::{EventMetadata, ProjectCommand};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;

use crate::commands::{CommandBus, ProjectAggregate};
use crate::config::Settings;

/// Disables webhooks by sending `DisableWebhook` through the command bus.
pub struct BusWebhookControl {
    bus: CommandBus,
}

impl BusWebhookControl {
    /// Over `bus`.
    pub fn new(bus: CommandBus) -> Self {
        Self { bus }
    }
}

impl workers::webhooks::WebhookControl for BusWebhookControl {
    fn disable<'a>(
        &'a self,
        project_id: &'a str,
        webhook_id: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let metadata = EventMetadata {
                client_name: Some("strata-webhook-worker".to_owned()),
                ..EventMetadata::default()
            };
            self.bus
                .execute::<ProjectAggregate, _>(project_id, &metadata, |_| {
                    Ok(ProjectCommand::DisableWebhook {
                        webhook_id: webhook_id.to_owned(),
                        reason: reason.to_owned(),
                    })
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}

/// The delivery worker's options from the settings.
pub fn delivery_options(settings: &Settings) -> workers::webhooks::DeliveryOptions {
    workers::webhooks::DeliveryOptions {
        timeout: std::time::Duration::from_secs(settings.webhook_timeout_seconds),
        // Validated when the settings were loaded.
        retry_schedule: settings.webhook_retry_schedule().unwrap_or_default(),
        allow_private_targets: settings.webhook_allow_private_targets,
        disable_after: std::time::Duration::from_secs(settings.webhook_disable_after_seconds),
        response_body_limit: settings.webhook_response_body_limit_bytes,
        server: json!({
            "name": settings.server_name,
            "company": settings.server_company,
            "description": settings.server_description,
            "adminContact": settings.admin_contact,
            "canonicalUrl": settings.origin(),
            "version": settings.speckle_version,
            "inviteOnly": settings.invite_only,
        }),
    }
}
