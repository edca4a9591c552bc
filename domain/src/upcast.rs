//! Upcasting: reading old event shapes as the current one.
//!
//! Stored events are never rewritten. When a payload shape must change, the event type gets a
//! new schema version and an upcaster that turns version `n` into `n + 1`. Readers run the chain
//! so that folds only ever see current shapes. Every upcaster is tested against a stored sample
//! of the version it reads.

use std::collections::BTreeMap;

use serde_json::Value;

/// A pure function from the payload of version `from_version` to that of `from_version + 1`.
pub type UpcastFn = fn(Value) -> Result<Value, String>;

/// One step of an event type's version chain.
#[derive(Clone, Copy, Debug)]
pub struct Upcaster {
    /// The event type this step applies to.
    pub event_type: &'static str,
    /// The version it reads; it produces `from_version + 1`.
    pub from_version: u32,
    /// The transformation.
    pub apply: UpcastFn,
}

/// Why an event could not be brought to its current shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpcastError {
    /// A step failed on this payload.
    #[error("upcasting {event_type} from v{from_version} failed: {reason}")]
    Failed {
        /// Event type.
        event_type: String,
        /// Version the failing step reads.
        from_version: u32,
        /// What the step said.
        reason: String,
    },
    /// The stored version is newer than this build knows: an old binary reading a newer log.
    #[error("{event_type} v{version} is newer than the v{current} this build understands")]
    FromTheFuture {
        /// Event type.
        event_type: String,
        /// Stored version.
        version: u32,
        /// Newest version this build knows.
        current: u32,
    },
    /// A step is missing in the chain.
    #[error("no upcaster for {event_type} v{version}")]
    Gap {
        /// Event type.
        event_type: String,
        /// Version with no step.
        version: u32,
    },
}

/// The registry of every event type's current version and upcast chain.
#[derive(Clone, Debug, Default)]
pub struct Upcasters {
    current: BTreeMap<&'static str, u32>,
    steps: BTreeMap<(&'static str, u32), UpcastFn>,
}

impl Upcasters {
    /// An empty registry: every type is taken as current at whatever version it is stored.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares the current version of `event_type`.
    pub fn current(mut self, event_type: &'static str, version: u32) -> Self {
        self.current.insert(event_type, version);
        self
    }

    /// Adds one step of a chain.
    pub fn step(mut self, upcaster: Upcaster) -> Self {
        self.steps
            .insert((upcaster.event_type, upcaster.from_version), upcaster.apply);
        self
    }

    /// The current version of `event_type`, if declared.
    pub fn current_version(&self, event_type: &str) -> Option<u32> {
        self.current.get(event_type).copied()
    }

    /// Brings `payload`, stored as `version`, to the current version of its type.
    /// Types never declared pass through unchanged.
    pub fn upcast(
        &self,
        event_type: &str,
        version: u32,
        payload: Value,
    ) -> Result<(u32, Value), UpcastError> {
        let Some(&current) = self.current.get(event_type) else {
            return Ok((version, payload));
        };
        if version > current {
            return Err(UpcastError::FromTheFuture {
                event_type: event_type.to_owned(),
                version,
                current,
            });
        }
        let mut payload = payload;
        for from in version..current {
            let step = self
                .steps
                .iter()
                .find(|((t, v), _)| *t == event_type && *v == from)
                .map(|(_, f)| *f)
                .ok_or_else(|| UpcastError::Gap {
                    event_type: event_type.to_owned(),
                    version: from,
                })?;
            payload = step(payload).map_err(|reason| UpcastError::Failed {
                event_type: event_type.to_owned(),
                from_version: from,
                reason,
            })?;
        }
        Ok((current, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rename_is_public(mut v: Value) -> Result<Value, String> {
        let obj = v.as_object_mut().ok_or("payload is not an object")?;
        let public = obj
            .remove("isPublic")
            .and_then(|p| p.as_bool())
            .ok_or("isPublic missing")?;
        obj.insert(
            "visibility".into(),
            json!(if public { "PUBLIC" } else { "PRIVATE" }),
        );
        Ok(v)
    }

    fn add_description(mut v: Value) -> Result<Value, String> {
        let obj = v.as_object_mut().ok_or("payload is not an object")?;
        obj.entry("description").or_insert(Value::Null);
        Ok(v)
    }

    fn registry() -> Upcasters {
        Upcasters::new()
            .current("Sample", 3)
            .step(Upcaster {
                event_type: "Sample",
                from_version: 1,
                apply: rename_is_public,
            })
            .step(Upcaster {
                event_type: "Sample",
                from_version: 2,
                apply: add_description,
            })
    }

    #[test]
    fn chains_steps_from_an_old_version() {
        let (v, p) = registry()
            .upcast("Sample", 1, json!({"name": "a", "isPublic": true}))
            .unwrap();
        assert_eq!(v, 3);
        assert_eq!(
            p,
            json!({"name": "a", "visibility": "PUBLIC", "description": null})
        );
    }

    #[test]
    fn current_and_unknown_types_pass_through() {
        let p = json!({"x": 1});
        assert_eq!(
            registry().upcast("Sample", 3, p.clone()).unwrap(),
            (3, p.clone())
        );
        assert_eq!(registry().upcast("Other", 7, p.clone()).unwrap(), (7, p));
    }

    #[test]
    fn reports_future_versions_gaps_and_failures() {
        let r = registry();
        assert!(matches!(
            r.upcast("Sample", 4, json!({})),
            Err(UpcastError::FromTheFuture { .. })
        ));
        assert!(matches!(
            r.upcast("Sample", 1, json!({"name": "a"})),
            Err(UpcastError::Failed {
                from_version: 1,
                ..
            })
        ));
        let gap = Upcasters::new().current("Sample", 2);
        assert!(matches!(
            gap.upcast("Sample", 1, json!({})),
            Err(UpcastError::Gap { version: 1, .. })
        ));
    }
}
