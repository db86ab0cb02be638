//! API tokens: made, listed and revoked in `DATA/auth/tokens.json` (by `causeway token` or the
//! admin API, both under one file lock), and checked per request by a [`Verifier`] that re-reads
//! the file when it changes.
//!
//! A token reads `cw_<id>_<secret>`: the id (10 hex digits) names it in lists, logs and the audit
//! log; the secret is 32 random bytes. Only the SHA-256 of the whole token is kept: the secret is
//! random, so a fast hash is as strong as a slow one and costs nothing per request.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::Role;

/// The directory, under the data directory, of the token file, its lock and the audit log.
pub const AUTH_DIR: &str = "auth";
const TOKENS_FILE: &str = "tokens.json";
const LOCK_FILE: &str = "tokens.lock";
/// The context a producer holds to send events of any context (or of no context in the model).
pub const ANY_CONTEXT: &str = "*";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a token file this causeway can read: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("no token has the id {0}: list them with `causeway token list`")]
    NoSuchToken(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AuthError + 'a {
    move |source| AuthError::Io { what, path: path.to_path_buf(), source }
}

/// One token as kept: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    /// What it is for, e.g. the service that holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub role: Role,
    /// A producer's bounded contexts (`*`: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Hex SHA-256 of the whole token.
    pub sha256: String,
}

impl TokenRecord {
    /// Whether a producer holding this token may send events owned by `context` (`None`: an
    /// event type the model does not name, or no model).
    pub fn may_produce(&self, context: Option<&str>) -> bool {
        self.role == Role::Producer && self.contexts.iter().any(|c| c == ANY_CONTEXT || Some(c.as_str()) == context)
    }

    /// How it is named in sentences: its id, and its name when it has one.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} ({name})", self.id),
            None => self.id.clone(),
        }
    }
}

/// A token just made: the record kept, and the token itself, shown once.
#[derive(Debug)]
pub struct NewToken {
    pub record: TokenRecord,
    pub token: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// The token file of one data directory.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
}

impl TokenStore {
    pub fn new(data: &Path) -> TokenStore {
        TokenStore { dir: data.join(AUTH_DIR) }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(TOKENS_FILE)
    }

    /// Every token, revoked ones included, oldest first.
    pub fn list(&self) -> Result<Vec<TokenRecord>, AuthError> {
        Ok(read_file(&self.path())?.tokens)
    }

    /// Makes a token. A producer names at least one context; other roles none.
    pub fn create(&self, role: Role, contexts: Vec<String>, name: Option<String>) -> Result<NewToken, AuthError> {
        check_scope(role, &contexts)?;
        if let Some(n) = &name
            && (n.trim().is_empty() || n.chars().count() > 200 || n.chars().any(char::is_control))
        {
            return Err(AuthError::Invalid("a token's name is 1 to 200 printable characters, e.g. the service that holds it".into()));
        }
        let id = hex(&random::<5>());
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>());
        let token = format!("cw_{id}_{secret}");
        let record = TokenRecord {
            id,
            name,
            role,
            contexts,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            revoked_at: None,
            sha256: sha256_hex(token.as_bytes()),
        };
        let kept = record.clone();
        self.update(move |tokens| {
            tokens.push(kept);
            Ok(())
        })?;
        Ok(NewToken { record, token })
    }

    /// Revokes a token: it is refused from the next request on. Revoking it again changes nothing.
    pub fn revoke(&self, id: &str) -> Result<TokenRecord, AuthError> {
        self.update(|tokens| {
            let record = tokens.iter_mut().find(|t| t.id == id).ok_or_else(|| AuthError::NoSuchToken(id.to_string()))?;
            if record.revoked_at.is_none() {
                record.revoked_at = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
            Ok(record.clone())
        })
    }

    /// Reads, changes and writes the file under its lock, so `causeway token` and a running
    /// server never lose each other's changes. The new file replaces the old whole (a rename), so
    /// a reader sees one or the other.
    fn update<T>(&self, change: impl FnOnce(&mut Vec<TokenRecord>) -> Result<T, AuthError>) -> Result<T, AuthError> {
        create_private_dir(&self.dir)?;
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = private_file(&lock_path)?;
        lock.lock().map_err(io("lock", &lock_path))?;
        let path = self.path();
        let mut file = read_file(&path)?;
        let answer = change(&mut file.tokens)?;
        file.version = 1;
        let text = serde_json::to_vec_pretty(&file).expect("tokens serialise");
        let temporary = self.dir.join(format!("{TOKENS_FILE}.new"));
        {
            let mut out = OpenOptions::new();
            out.write(true).create(true).truncate(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut out, 0o600);
            let mut f = out.open(&temporary).map_err(io("write", &temporary))?;
            f.write_all(&text).and_then(|_| f.sync_all()).map_err(io("write", &temporary))?;
        }
        std::fs::rename(&temporary, &path).map_err(io("replace", &path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io("sync", &self.dir))?;
        Ok(answer)
    }
}

fn check_scope(role: Role, contexts: &[String]) -> Result<(), AuthError> {
    match role {
        Role::Producer if contexts.is_empty() => Err(AuthError::Invalid(
            "a producer token holds the bounded contexts whose events it may send: give --context NAME once per context (--context '*' for any)"
                .into(),
        )),
        Role::Producer => match contexts.iter().find(|c| c.trim().is_empty() || c.chars().any(char::is_control)) {
            Some(bad) => Err(AuthError::Invalid(format!("'{bad}' is not a context name"))),
            None => Ok(()),
        },
        _ if !contexts.is_empty() => {
            Err(AuthError::Invalid(format!("only producer tokens hold contexts; a {role} token reaches every context: drop --context")))
        }
        _ => Ok(()),
    }
}

fn read_file(path: &Path) -> Result<TokenFile, AuthError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AuthError::Corrupt { path: path.to_path_buf(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
        Err(e) => Err(AuthError::Io { what: "read", path: path.to_path_buf(), source: e }),
    }
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), AuthError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io("create", dir))
}

pub(crate) fn private_file(path: &Path) -> Result<File, AuthError> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(io("open", path))
}

pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the system's random source");
    bytes
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The CSRF token that goes with a signed-in token: derived from it, so only a page that was
/// given it (or someone holding the token) can send it.
pub fn csrf_token(token: &str) -> String {
    sha256_hex(format!("causeway-csrf\n{token}").as_bytes())
}

/// Whether `sent` is the CSRF token of `token`, compared in constant time.
pub fn csrf_matches(token: &str, sent: &str) -> bool {
    bool::from(csrf_token(token).as_bytes().ct_eq(sent.as_bytes()))
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Not shaped like a causeway token.
    Malformed,
    /// No token with its id and secret.
    Unknown,
    Revoked {
        id: String,
    },
    /// The token file could not be read: every token is refused until it can.
    Unreadable(String),
}

impl Denied {
    pub fn sentence(&self) -> String {
        match self {
            Denied::Malformed => "the bearer token is not a causeway token (they read cw_<id>_<secret>)".into(),
            Denied::Unknown => "the bearer token is not known to this server".into(),
            Denied::Revoked { id } => format!("token {id} was revoked"),
            Denied::Unreadable(why) => format!("the server cannot read its token file ({why}); every token is refused until it can"),
        }
    }
}

/// When the file last changed, as far as `stat` tells: a rename gives a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified_ns: i128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { inode: m.ino(), len: m.len(), modified_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()) })
}

#[derive(Default)]
struct Loaded {
    stamp: Option<Stamp>,
    tokens: HashMap<String, TokenRecord>,
    error: Option<String>,
}

/// Checks tokens against the file, re-read whenever it changed (a `stat` per check).
pub struct Verifier {
    path: PathBuf,
    loaded: RwLock<Loaded>,
}

impl Verifier {
    pub fn new(store: &TokenStore) -> Verifier {
        let verifier = Verifier { path: store.path(), loaded: RwLock::default() };
        verifier.refresh();
        verifier
    }

    /// The live (not revoked) tokens now, and whether the file could be read.
    pub fn live(&self) -> Result<usize, String> {
        self.refresh();
        let loaded = self.loaded.read().expect("tokens lock");
        match &loaded.error {
            Some(e) => Err(e.clone()),
            None => Ok(loaded.tokens.values().filter(|t| t.revoked_at.is_none()).count()),
        }
    }

    fn refresh(&self) {
        let now = stamp(&self.path);
        if self.loaded.read().expect("tokens lock").stamp == now && now.is_some() {
            return;
        }
        let mut loaded = self.loaded.write().expect("tokens lock");
        if loaded.stamp == now && now.is_some() {
            return;
        }
        match read_file(&self.path) {
            Ok(file) => {
                *loaded = Loaded { stamp: now, tokens: file.tokens.into_iter().map(|t| (t.id.clone(), t)).collect(), error: None };
            }
            Err(e) => {
                *loaded = Loaded { stamp: now, tokens: HashMap::new(), error: Some(e.to_string()) };
            }
        }
    }

    /// The record of a live token, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<TokenRecord, Denied> {
        let id = token
            .strip_prefix("cw_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
            .filter(|id| id.len() == 10 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(Denied::Malformed)?;
        self.refresh();
        let loaded = self.loaded.read().expect("tokens lock");
        if let Some(error) = &loaded.error {
            return Err(Denied::Unreadable(error.clone()));
        }
        let record = loaded.tokens.get(id).ok_or(Denied::Unknown)?;
        let presented = Sha256::digest(token.as_bytes());
        let Some(kept) = unhex(&record.sha256) else { return Err(Denied::Unknown) };
        if !bool::from(presented.as_slice().ct_eq(&kept)) {
            return Err(Denied::Unknown);
        }
        if record.revoked_at.is_some() {
            return Err(Denied::Revoked { id: record.id.clone() });
        }
        Ok(record.clone())
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    text.len().is_multiple_of(2).then_some(())?;
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_checked_by_its_hash_and_refused_once_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let verifier = Verifier::new(&store);
        assert_eq!(verifier.live(), Ok(0));
        let made = store.create(Role::Operator, vec![], Some("on-call".into())).unwrap();
        assert!(made.token.starts_with(&format!("cw_{}_", made.record.id)));
        // The file keeps the hash, never the token or its secret.
        let text = std::fs::read_to_string(store.path()).unwrap();
        // The secret itself may hold '_'.
        let secret = made.token.strip_prefix("cw_").unwrap().split_once('_').unwrap().1;
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains(&made.record.sha256));

        assert_eq!(verifier.verify(&made.token).unwrap().role, Role::Operator);
        // The same id with another secret is unknown, not a near miss.
        let forged = format!("cw_{}_{}", made.record.id, "A".repeat(43));
        assert_eq!(verifier.verify(&forged), Err(Denied::Unknown));
        assert_eq!(verifier.verify("Bearer nonsense"), Err(Denied::Malformed));
        assert_eq!(verifier.verify("cw_zzzzzzzzzz_x"), Err(Denied::Malformed));

        store.revoke(&made.record.id).unwrap();
        assert_eq!(verifier.verify(&made.token), Err(Denied::Revoked { id: made.record.id.clone() }));
        assert!(matches!(store.revoke("0000000000"), Err(AuthError::NoSuchToken(_))));
    }

    #[test]
    fn a_producer_holds_contexts_and_other_roles_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        assert!(matches!(store.create(Role::Producer, vec![], None), Err(AuthError::Invalid(_))));
        assert!(matches!(store.create(Role::Reader, vec!["orders".into()], None), Err(AuthError::Invalid(_))));
        // Names count characters, not bytes.
        assert!(store.create(Role::Reader, vec![], Some("é".repeat(200))).is_ok());
        assert!(matches!(store.create(Role::Reader, vec![], Some("é".repeat(201))), Err(AuthError::Invalid(_))));
        let producer = store.create(Role::Producer, vec!["orders".into(), "payments".into()], None).unwrap().record;
        assert!(producer.may_produce(Some("orders")));
        assert!(!producer.may_produce(Some("shipping")));
        assert!(!producer.may_produce(None));
        let any = store.create(Role::Producer, vec![ANY_CONTEXT.into()], None).unwrap().record;
        assert!(any.may_produce(Some("shipping")) && any.may_produce(None));
        let admin = store.create(Role::Admin, vec![], None).unwrap().record;
        assert!(!admin.may_produce(Some("orders")), "only producers ingest");
        assert_eq!(store.list().unwrap().len(), 4);
    }

    #[test]
    fn an_unreadable_file_refuses_every_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let made = store.create(Role::Reader, vec![], None).unwrap();
        let verifier = Verifier::new(&store);
        assert!(verifier.verify(&made.token).is_ok());
        std::fs::write(store.path(), b"{ not json").unwrap();
        assert!(matches!(verifier.verify(&made.token), Err(Denied::Unreadable(_))));
        assert!(verifier.live().is_err());
    }

    #[test]
    fn the_directory_and_file_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        store.create(Role::Admin, vec![], None).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join(AUTH_DIR)), 0o700);
        assert_eq!(mode(&store.path()), 0o600);
    }
}
