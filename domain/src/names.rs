//! Validated names and text fields, with the limits of the original's columns.
//!
//! Limits come from the original's schema (`packages/server/modules/core/migrations/
//! 000-core.js`): names `varchar(512)`, descriptions and commit messages `varchar(65536)`,
//! `sourceApplication` `varchar(1024)`, user `bio` 2048, `company` 512, `avatar` 524288. Lengths
//! are counted in characters, as PostgreSQL counts `varchar(n)`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// Longest project, model or user name.
pub const MAX_NAME_CHARS: usize = 512;
/// Longest project or model description.
pub const MAX_DESCRIPTION_CHARS: usize = 65_536;
/// Longest version message.
pub const MAX_MESSAGE_CHARS: usize = 65_536;
/// Longest `sourceApplication`.
pub const MAX_SOURCE_APPLICATION_CHARS: usize = 1_024;
/// Longest user company.
pub const MAX_COMPANY_CHARS: usize = 512;
/// Longest user bio.
pub const MAX_BIO_CHARS: usize = 2_048;
/// Longest user avatar (usually a data URL).
pub const MAX_AVATAR_CHARS: usize = 524_288;
/// Longest email address (RFC 5321's practical limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest object id a version may reference. Speckle's are 32 hex chars; 64 leaves room for a
/// full SHA-256 without accepting arbitrary blobs.
pub const MAX_OBJECT_ID_CHARS: usize = 64;

/// Checks that `value` has at most `max` characters.
pub(crate) fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), DomainError> {
    if value.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// Trims `raw` and checks it is non-empty and at most [`MAX_NAME_CHARS`].
fn trimmed_name(field: &'static str, raw: &str) -> Result<String, DomainError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(DomainError::invalid(field, "is required"));
    }
    check_len(field, name, MAX_NAME_CHARS)?;
    Ok(name.to_owned())
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
    };
}

/// A project name: trimmed, non-empty, at most [`MAX_NAME_CHARS`]. (The original substitutes a
/// random name like "Shiny Tower" when none is given; that randomness belongs to the caller.)
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectName(String);

impl ProjectName {
    /// Validates and trims `raw`.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        trimmed_name("name", raw).map(Self)
    }
}
string_newtype!(ProjectName);

/// A user's display name: trimmed, non-empty, at most [`MAX_NAME_CHARS`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl UserName {
    /// Validates and trims `raw`.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        trimmed_name("name", raw).map(Self)
    }
}
string_newtype!(UserName);

/// A model name, in the canonical form the original stores: trimmed and lower-cased, so
/// uniqueness per project is case-insensitive by construction.
///
/// `/` separates levels of the model tree (`facade/north`). The rules below restate the
/// original's `validateBranchName` (speckle-server `packages/server/modules/core/repositories/
/// branches.ts`, snapshot 51d43b91c4): after trimming, a name must be non-empty; it must not
/// begin with `/`, `#` or `$`, must not end with `/`, must not contain two slashes in a row, a
/// comma or a backslash. The original lower-cases names on every create and rename
/// (`createBranchFactory`, `updateBranchFactory`). Its column is `varchar(512)`, so longer names
/// are refused here too. Its current-API `modelMutations.create` additionally trims each
/// segment and drops empty ones before validating; that is [`ModelName::tidy`], which the API
/// layer applies for that mutation only (legacy `branchCreate` and renames do not).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelName(String);

impl ModelName {
    /// Names that exist by convention and may not be deleted (Speckle: `main`, `globals`).
    pub const RESERVED: [&'static str; 2] = ["main", "globals"];

    /// Validates `raw` and returns its canonical (trimmed, lower-cased) form.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(DomainError::invalid("name", "a model name is required"));
        }
        if name.starts_with('/')
            || name.ends_with('/')
            || name.starts_with('#')
            || name.starts_with('$')
            || name.contains("//")
            || name.contains(',')
            || name.contains('\\')
        {
            return Err(DomainError::invalid(
                "name",
                "model names cannot start with \"#\" or \"$\", start or end with \"/\", \
                 contain \"//\", commas or backslashes",
            ));
        }
        let lower = name.to_lowercase();
        check_len("name", &lower, MAX_NAME_CHARS)?;
        Ok(Self(lower))
    }

    /// The current API's clean-up before validation: trims every `/`-separated segment and
    /// drops empty ones, so `" a / b/ "` becomes `"a/b"` and `"a//b"` becomes `"a/b"`.
    pub fn tidy(raw: &str) -> String {
        raw.split('/')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The tree path, e.g. `["facade", "north"]`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment, which Speckle shows as `displayName`.
    pub fn display_name(&self) -> &str {
        Self::display_name_of(&self.0)
    }

    /// [`ModelName::display_name`] of a stored name (read models keep names as text).
    pub fn display_name_of(name: &str) -> &str {
        // rsplit always yields one piece.
        name.rsplit('/').next().unwrap_or(name)
    }

    /// Whether this model may never be deleted.
    pub fn is_reserved(&self) -> bool {
        Self::RESERVED.contains(&self.0.as_str())
    }
}
string_newtype!(ModelName);

/// An email address, trimmed and lower-cased (the original lower-cases on sign-up), with a
/// simple shape check: one `@`, a non-empty local part, a dotted domain, no whitespace. Real
/// verification is by mail, not by syntax.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Validates and normalises `raw`.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let email = raw.trim().to_lowercase();
        let bad = || DomainError::invalid("email", "is not a valid email address");
        if email.is_empty() {
            return Err(DomainError::invalid("email", "is required"));
        }
        check_len("email", &email, MAX_EMAIL_CHARS)?;
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(bad());
        };
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(bad());
        }
        Ok(Self(email))
    }
}
string_newtype!(Email);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_follow_the_original_rules() {
        for ok in [
            "main",
            "Facade/North",
            "a/b/c",
            "  spaced name  ",
            "a b/c#d",
            "x$",
        ] {
            assert!(ModelName::parse(ok).is_ok(), "{ok:?} should be valid");
        }
        for bad in [
            "", "   ", "/a", "a/", "#a", "$a", "a//b", "a,b", "a\\b", "/", " /a ",
        ] {
            assert!(
                matches!(
                    ModelName::parse(bad),
                    Err(DomainError::Invalid { field: "name", .. })
                ),
                "{bad:?} should be invalid"
            );
        }
        assert_eq!(
            ModelName::parse(&"a".repeat(MAX_NAME_CHARS))
                .unwrap()
                .as_str()
                .len(),
            MAX_NAME_CHARS
        );
        assert!(ModelName::parse(&"a".repeat(MAX_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn model_names_are_trimmed_and_lower_cased() {
        let name = ModelName::parse("  Facade/North ").unwrap();
        assert_eq!(name.as_str(), "facade/north");
        assert_eq!(name.display_name(), "north");
        assert_eq!(name.segments().collect::<Vec<_>>(), ["facade", "north"]);
        assert!(ModelName::parse("MAIN").unwrap().is_reserved());
        assert!(!ModelName::parse("main/sub").unwrap().is_reserved());
    }

    #[test]
    fn tidy_drops_empty_segments_like_the_current_api() {
        assert_eq!(ModelName::tidy(" a / b/ "), "a/b");
        assert_eq!(ModelName::tidy("/a//b/"), "a/b");
        assert_eq!(ModelName::tidy("//"), "");
    }

    #[test]
    fn project_and_user_names_are_trimmed_and_bounded() {
        assert_eq!(
            ProjectName::parse("  My Project ").unwrap().as_str(),
            "My Project"
        );
        assert!(ProjectName::parse(" ").is_err());
        assert!(ProjectName::parse(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(ProjectName::parse(&"é".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(UserName::parse("").is_err());
    }

    #[test]
    fn emails_are_normalised_and_shape_checked() {
        assert_eq!(
            Email::parse("  Jane.Doe@Example.COM ").unwrap().as_str(),
            "jane.doe@example.com"
        );
        for bad in [
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@example",
            "jane@@example.com",
            "ja ne@example.com",
            "jane@.example.com",
            "jane@example..com",
            "jane@example.com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn newtypes_roundtrip_through_serde_and_refuse_invalid_text() {
        let name = ModelName::parse("A/B").unwrap();
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"a/b\"");
        assert_eq!(serde_json::from_str::<ModelName>(&json).unwrap(), name);
        assert!(serde_json::from_str::<ModelName>("\"a//b\"").is_err());
        assert!(serde_json::from_str::<Email>("\"nope\"").is_err());
    }
}
