//! Who may do what (docs/security.md): API tokens kept as SHA-256 hashes in `DATA/auth/tokens.json`
//! ([`TokenStore`], [`Verifier`]), the four roles and the kinds of access each holds ([`Role`],
//! [`Access`]), per-token rates ([`rate`]) and the append-only, hash-chained audit log ([`audit`]).
//!
//! **Invariants:**
//! - A token's secret is shown once, when it is made, and never stored: the file holds its
//!   SHA-256, compared in constant time. The file lives outside the store, so no SQL reaches it.
//! - A role's rights are [`Role::allows`] alone: reader reads; producer ingests, and only events
//!   of the contexts it holds; operator reads and acts on the DLQ and the model; admin also
//!   manages tokens and reads the audit log.
//! - A revoked token, or one removed from the file, is refused from the next request on: the
//!   verifier re-reads the file whenever it changed, and refuses every token when it cannot.

pub mod audit;
pub mod rate;
mod tokens;

pub use tokens::{ANY_CONTEXT, AUTH_DIR, AuthError, Denied, NewToken, TokenRecord, TokenStore, Verifier, csrf_matches, csrf_token};

use serde::{Deserialize, Serialize};

/// What a token may do, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Producer,
    Operator,
    Admin,
}

/// The kind of access a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Health, readiness, the API document, the UI's assets and sign-in: anyone.
    Public,
    /// Queries, pages, metrics, SQL.
    Read,
    /// Sending events and reporting dead letters.
    Ingest,
    /// DLQ replay, discard and resolve, silences, model reload, DLQ payloads.
    Operate,
    /// Tokens and the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Producer, Role::Operator, Role::Admin];

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == text)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Producer => "producer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether this role holds `access`. A producer reads nothing: a service that sends events is
    /// given only what it needs to send them.
    pub fn allows(self, access: Access) -> bool {
        match access {
            Access::Public => true,
            Access::Read => matches!(self, Role::Reader | Role::Operator | Role::Admin),
            Access::Ingest => self == Role::Producer,
            Access::Operate => matches!(self, Role::Operator | Role::Admin),
            Access::Admin => self == Role::Admin,
        }
    }
}

impl Access {
    /// The roles that hold it, for a refusal's sentence.
    pub fn roles(self) -> &'static str {
        match self {
            Access::Public => "any",
            Access::Read => "reader, operator or admin",
            Access::Ingest => "producer",
            Access::Operate => "operator or admin",
            Access::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_holds_exactly_its_access() {
        let holds = |role: Role| -> Vec<Access> {
            [Access::Public, Access::Read, Access::Ingest, Access::Operate, Access::Admin].into_iter().filter(|a| role.allows(*a)).collect()
        };
        assert_eq!(holds(Role::Reader), [Access::Public, Access::Read]);
        assert_eq!(holds(Role::Producer), [Access::Public, Access::Ingest]);
        assert_eq!(holds(Role::Operator), [Access::Public, Access::Read, Access::Operate]);
        assert_eq!(holds(Role::Admin), [Access::Public, Access::Read, Access::Operate, Access::Admin]);
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
