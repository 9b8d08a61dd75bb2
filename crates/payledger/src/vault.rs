//! Card and bank account numbers encrypted at rest with AES-256-GCM.
//!
//! A [`Vault`] holds one current key and any number of previous ones. [`Vault::encrypt`] always uses the
//! current key and names it in the token it returns, so after a rotation (configure `[new, old]`) rows
//! written before it still decrypt, and a background job can re-encrypt them at leisure.
//!
//! A token reads `v1:<key id>:<hex of nonce || ciphertext || tag>`: text, so it fits any column type,
//! and self-describing, so the format can change later without guessing what a stored value is. The
//! key id is the first 8 hex characters of SHA-256 of the key; it identifies a key without revealing it.
//!
//! Hex rather than base64: it doubles the size of a few dozen bytes, which a ledger row does not notice,
//! and the same codec already reads keys from configuration, so there is one decoder to get right.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// The name of the development key file inside the data directory.
pub const DEVELOPMENT_KEY_FILE: &str = "card-encryption.key";

/// The token format this module writes; the first field of every token.
const TOKEN_VERSION: &str = "v1";
/// AES-256 key length in bytes.
const KEY_LEN: usize = 32;
/// GCM's standard 96-bit nonce: the only length for which a random nonce needs no extra derivation.
const NONCE_LEN: usize = 12;
/// GCM's full 128-bit tag; aes-gcm appends it to the ciphertext.
const TAG_LEN: usize = 16;
/// Hex characters of a key id.
const KEY_ID_LEN: usize = 8;

/// Why the vault could not be built, or a value could not be encrypted or decrypted.
///
/// No message ever contains a plaintext, a key, or the contents of a key file: these errors end up in
/// logs and HTTP 500 bodies.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The configuration lists no key at all.
    #[error("no card encryption key is configured")]
    NoKeys,
    /// A configured key or the development key file does not hold a 32-byte hex key.
    #[error("{origin}: {problem}")]
    InvalidKey {
        /// Where the key came from, e.g. `configured key #2` or the key file's path.
        origin: String,
        /// What is wrong with it.
        problem: KeyProblem,
    },
    /// Two configured keys have the same key id (almost certainly the same key listed twice), so a token
    /// naming that id would be ambiguous.
    #[error("{origin} has the same key id {key_id} as an earlier key; list each key once")]
    DuplicateKey {
        /// Where the repeated key came from.
        origin: String,
        /// The shared key id.
        key_id: String,
    },
    /// The development key file could not be read or created.
    #[error("development key file {}: {source}", path.display())]
    KeyFile {
        /// The file (or, for a temporary file, the file being created).
        path: PathBuf,
        /// The I/O failure.
        source: io::Error,
    },
    /// The operating system's random number generator failed, so no key or nonce could be drawn.
    #[error("the operating system's random number generator failed: {0}")]
    Randomness(#[source] rand::rand_core::OsError),
    /// AES-GCM refused to encrypt (only possible for a plaintext of gigabytes).
    #[error("encryption failed")]
    Encryption,
    /// The token names a key id this vault does not hold: a key was removed from the configuration while
    /// rows encrypted with it remain.
    #[error("ciphertext was encrypted with key id {key_id}, which is not configured")]
    UnknownKeyId {
        /// The key id the token names.
        key_id: String,
    },
    /// The value is not a token this vault writes.
    #[error("malformed ciphertext token: {0}")]
    MalformedToken(&'static str),
    /// The key or associated data do not match, or the token was altered.
    #[error("ciphertext failed authentication: wrong key, wrong row, or tampered")]
    AuthenticationFailed,
}

/// What is wrong with a key's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Nothing but whitespace.
    #[error("key is empty; expected 64 hex characters (32 bytes)")]
    Empty,
    /// Hex, but not 32 bytes of it.
    #[error("expected 64 hex characters (32 bytes), found {hex_chars}")]
    WrongLength {
        /// How many hex characters there are.
        hex_chars: usize,
    },
    /// Something other than hex digits. Which character is not said: it would be part of the key.
    #[error("key contains characters other than 0-9 and a-f; expected 64 hex characters (32 bytes)")]
    NotHex,
}

/// One AES-256-GCM key and its id.
#[derive(Clone)]
struct VaultKey {
    id: String,
    cipher: Aes256Gcm,
    /// A key derived for fingerprints (HMAC-SHA256 of the key over a label), never the encryption key itself.
    fingerprint_key: [u8; 32],
}

impl VaultKey {
    fn new(key: &[u8; KEY_LEN]) -> VaultKey {
        // HMAC takes a key of any length, so keying cannot fail; the fallback only keeps this total.
        let fingerprint_key = match <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key) {
            Ok(mut mac) => {
                hmac::Mac::update(&mut mac, b"payledger request fingerprints v1");
                hmac::Mac::finalize(mac).into_bytes().into()
            }
            Err(_) => Sha256::digest(key).into(),
        };
        VaultKey { id: key_id(key), cipher: Aes256Gcm::new(&(*key).into()), fingerprint_key }
    }
}

/// Encrypts and decrypts card and bank account numbers.
///
/// Cheap to clone and safe to share between threads. Its `Debug` shows key ids only.
#[derive(Clone)]
pub struct Vault {
    /// What [`Vault::encrypt`] uses.
    current: VaultKey,
    /// Older keys, still accepted by [`Vault::decrypt`].
    previous: Vec<VaultKey>,
}

impl Vault {
    /// A vault from hex-encoded 32-byte keys, e.g. from configuration: the first is current, the rest are
    /// earlier keys kept so that rows encrypted before a rotation still decrypt. Surrounding whitespace
    /// is ignored, upper- and lower-case hex are accepted.
    pub fn from_config<S: AsRef<str>>(keys: &[S]) -> Result<Vault, VaultError> {
        let mut parsed = Vec::with_capacity(keys.len());
        for (index, key) in keys.iter().enumerate() {
            let origin = || format!("configured key #{}", index + 1);
            let bytes =
                parse_key(key.as_ref()).map_err(|problem| VaultError::InvalidKey { origin: origin(), problem })?;
            let key = VaultKey::new(&bytes);
            if parsed.iter().any(|earlier: &VaultKey| earlier.id == key.id) {
                return Err(VaultError::DuplicateKey { origin: origin(), key_id: key.id });
            }
            parsed.push(key);
        }
        let mut parsed = parsed.into_iter();
        let current = parsed.next().ok_or(VaultError::NoKeys)?;
        Ok(Vault { current, previous: parsed.collect() })
    }

    /// Whether `data_dir` holds a development key, made by [`Vault::development`] of this or another process.
    pub fn has_development_key(data_dir: &Path) -> bool {
        data_dir.join(DEVELOPMENT_KEY_FILE).is_file()
    }

    /// The development profile's vault: the key in `<data_dir>/card-encryption.key`, generated (mode 0600,
    /// directory created if needed) on first use. Logs a warning naming the file, never the key.
    ///
    /// Safe when several processes start at once on the same directory: the key is written to a private
    /// temporary file and hard-linked into place, which fails if the file already exists, so exactly one
    /// key wins, every process reads that one, and no process ever sees a half-written file.
    pub fn development(data_dir: &Path) -> Result<Vault, VaultError> {
        let path = data_dir.join(DEVELOPMENT_KEY_FILE);
        let (key, created) = match read_key_file(&path)? {
            Some(key) => (key, false),
            None => create_key_file(data_dir, &path)?,
        };
        let vault = Vault { current: VaultKey::new(&key), previous: Vec::new() };
        tracing::warn!(
            path = %path.display(),
            key_id = %vault.current.id,
            created,
            "card numbers are encrypted with a generated development key; configure keys for production"
        );
        Ok(vault)
    }

    /// A keyed digest (HMAC-SHA256) of `data`, for identifying requests that carry card numbers: a plain hash
    /// of a card number could be reversed by trying every number, a keyed one cannot without the key.
    pub fn fingerprint(&self, data: &[u8]) -> String {
        let mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.current.fingerprint_key);
        match mac {
            Ok(mut mac) => {
                hmac::Mac::update(&mut mac, data);
                crate::hex::encode(&hmac::Mac::finalize(mac).into_bytes())
            }
            Err(_) => String::new(),
        }
    }

    /// The id of the key [`Vault::encrypt`] uses; a token naming another id is due for re-encryption.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Encrypts `plaintext` with the current key and a fresh random nonce into a `v1:<key id>:<hex>` token.
    ///
    /// `associated_data` is authenticated but not stored: pass what identifies the value's place (the
    /// payout id, and the column name if a row has several encrypted columns), and the token will only
    /// decrypt with the same bytes, so a token copied to another row or column is refused.
    ///
    /// Fails only if the operating system's random number generator does.
    pub fn encrypt(&self, plaintext: &str, associated_data: &[u8]) -> Result<String, VaultError> {
        // Straight from the OS rather than a user-space generator: a repeated nonce under one key exposes
        // the GCM authentication key, and the OS generator cannot be duplicated by a fork. 2^32 random
        // nonces per key keep the collision chance negligible; card numbers come nowhere near.
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.try_fill_bytes(&mut nonce).map_err(VaultError::Randomness)?;
        let sealed = self
            .current
            .cipher
            .encrypt(&nonce.into(), Payload { msg: plaintext.as_bytes(), aad: associated_data })
            .map_err(|_| VaultError::Encryption)?;
        let mut body = Vec::with_capacity(NONCE_LEN + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        Ok(format!("{TOKEN_VERSION}:{}:{}", self.current.id, crate::hex::encode(&body)))
    }

    /// Decrypts a token from [`Vault::encrypt`] with whichever held key it names, given the same
    /// `associated_data` it was encrypted with.
    pub fn decrypt(&self, token: &str, associated_data: &[u8]) -> Result<String, VaultError> {
        let mut fields = token.splitn(3, ':');
        let (Some(version), Some(id), Some(body)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(VaultError::MalformedToken("expected version:key id:data"));
        };
        if version != TOKEN_VERSION {
            return Err(VaultError::MalformedToken("unsupported version"));
        }
        if id.len() != KEY_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(VaultError::MalformedToken("key id is not 8 hex characters"));
        }
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == id)
            .ok_or_else(|| VaultError::UnknownKeyId { key_id: id.to_owned() })?;
        let body = crate::hex::decode(body).ok_or(VaultError::MalformedToken("data is not hex"))?;
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::MalformedToken("data is too short"));
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| VaultError::MalformedToken("data is too short"))?;
        let plaintext = key
            .cipher
            .decrypt(&nonce.into(), Payload { msg: sealed, aad: associated_data })
            .map_err(|_| VaultError::AuthenticationFailed)?;
        // Authenticated bytes came from `encrypt`, which only takes `&str`; anything else means a key
        // shared with another program, and the bytes must not be echoed.
        String::from_utf8(plaintext).map_err(|_| VaultError::MalformedToken("decrypted value is not UTF-8"))
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("current_key_id", &self.current.id)
            .field("previous_key_ids", &self.previous.iter().map(|key| key.id.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

/// The first 8 hex characters of SHA-256 of the key: 32 bits tell a handful of keys apart, and a hash
/// of a 256-bit random key reveals nothing usable about it.
fn key_id(key: &[u8; KEY_LEN]) -> String {
    let digest = Sha256::digest(key);
    crate::hex::encode(&digest[..KEY_ID_LEN / 2])
}

/// Reads a hex key, ignoring surrounding whitespace (a trailing newline, or an editor's indentation).
fn parse_key(text: &str) -> Result<[u8; KEY_LEN], KeyProblem> {
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyProblem::Empty);
    }
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyProblem::NotHex);
    }
    let wrong_length = || KeyProblem::WrongLength { hex_chars: text.len() };
    crate::hex::decode(text).ok_or_else(wrong_length)?.try_into().map_err(|_| wrong_length())
}

/// The key in `path`, or `None` if there is no such file.
fn read_key_file(path: &Path) -> Result<Option<[u8; KEY_LEN]>, VaultError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(VaultError::KeyFile { path: path.to_owned(), source }),
    };
    let key = parse_key(&text).map_err(|problem| VaultError::InvalidKey {
        origin: format!("development key file {}", path.display()),
        problem,
    })?;
    warn_if_shared(path);
    Ok(Some(key))
}

/// A key file others can read defeats the encryption; say so, but a development setup keeps working.
#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the development key file is accessible to other users; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

/// Generates a key and publishes it at `path` unless another process got there first; returns the key in
/// effect and whether this call created it.
fn create_key_file(data_dir: &Path, path: &Path) -> Result<([u8; KEY_LEN], bool), VaultError> {
    fs::create_dir_all(data_dir).map_err(key_file_error(data_dir))?;

    let mut key = [0u8; KEY_LEN];
    OsRng.try_fill_bytes(&mut key).map_err(VaultError::Randomness)?;
    let mut suffix = [0u8; 8];
    OsRng.try_fill_bytes(&mut suffix).map_err(VaultError::Randomness)?;
    // Same directory, so the hard link below stays on one filesystem; a random name, so concurrent
    // creators never share a temporary file.
    let temporary =
        TemporaryFile(data_dir.join(format!(".{DEVELOPMENT_KEY_FILE}.{}.tmp", crate::hex::encode(&suffix))));
    {
        let mut file = private_file(&temporary.0).map_err(key_file_error(&temporary.0))?;
        let mut text = crate::hex::encode(&key);
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(key_file_error(&temporary.0))?;
        // On disk before it is published: a key lost to a crash would make every row written with it
        // unreadable.
        file.sync_all().map_err(key_file_error(&temporary.0))?;
    }
    // link(2) refuses an existing name, which makes it an atomic create-new of a file that already holds
    // its whole content; `create_new` on the final name would let a racing reader see it empty.
    match fs::hard_link(&temporary.0, path) {
        Ok(()) => {
            sync_directory(data_dir).map_err(key_file_error(data_dir))?;
            Ok((key, true))
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            let key = read_key_file(path)?.ok_or_else(|| VaultError::KeyFile {
                path: path.to_owned(),
                source: io::Error::new(io::ErrorKind::NotFound, "exists but cannot be opened (dangling link?)"),
            })?;
            Ok((key, false))
        }
        Err(source) => Err(VaultError::KeyFile { path: path.to_owned(), source }),
    }
}

/// Wraps an I/O failure on `path`, for `map_err`.
fn key_file_error(path: &Path) -> impl FnOnce(io::Error) -> VaultError + '_ {
    move |source| VaultError::KeyFile { path: path.to_owned(), source }
}

/// Creates a new file only its owner can read and write.
fn private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Set at creation, not chmod-ed after: the key is never readable by others, even briefly.
        options.mode(0o600);
    }
    options.open(path)
}

/// Makes a new directory entry durable.
#[cfg(unix)]
fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// A temporary file removed when dropped, whichever way its creator returns.
struct TemporaryFile(PathBuf);

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        match fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            // A leftover holds a key (maybe the one in use), so someone should delete it.
            Err(error) => tracing::warn!(path = %self.0.display(), %error, "could not remove a temporary key file"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY_B: &str = "f0e0d0c0b0a090807060504030201000f1e1d1c1b1a191817161514131211101";
    const CARD: &str = "4111111111111111";
    const ROW: &[u8] = b"payout:0190c0de-0000-7000-8000-000000000001";

    fn vault(keys: &[&str]) -> Vault {
        Vault::from_config(keys).expect("valid test keys")
    }

    #[test]
    fn round_trip() {
        let vault = vault(&[KEY_A]);
        let token = vault.encrypt(CARD, ROW).unwrap();
        assert!(token.starts_with(&format!("v1:{}:", vault.current_key_id())), "{token}");
        assert!(!token.contains(CARD));
        assert_eq!(vault.decrypt(&token, ROW).unwrap(), CARD);
        assert_eq!(vault.decrypt(&vault.encrypt("", ROW).unwrap(), ROW).unwrap(), "");
        let unicode = "счёт 40817810099910004312";
        assert_eq!(vault.decrypt(&vault.encrypt(unicode, b"").unwrap(), b"").unwrap(), unicode);
    }

    #[test]
    fn key_id_is_a_prefix_of_the_keys_sha256() {
        let key: [u8; 32] = crate::hex::decode(KEY_A).unwrap().try_into().unwrap();
        let expected = crate::hex::encode(&Sha256::digest(key));
        assert_eq!(vault(&[KEY_A]).current_key_id(), &expected[..8]);
        // Case and whitespace in configuration do not change the key.
        assert_eq!(vault(&[&format!("  {}\n", KEY_A.to_uppercase())]).current_key_id(), &expected[..8]);
    }

    #[test]
    fn each_encryption_is_different() {
        let vault = vault(&[KEY_A]);
        let first = vault.encrypt(CARD, ROW).unwrap();
        let second = vault.encrypt(CARD, ROW).unwrap();
        assert_ne!(first, second);
        // The nonces differ, not just the ciphertexts.
        assert_ne!(first.split(':').nth(2).unwrap()[..24], second.split(':').nth(2).unwrap()[..24]);
        assert_eq!(vault.decrypt(&first, ROW).unwrap(), vault.decrypt(&second, ROW).unwrap());
    }

    #[test]
    fn tampered_token_fails() {
        let vault = vault(&[KEY_A]);
        let token = vault.encrypt(CARD, ROW).unwrap();
        let prefix_len = "v1:".len() + KEY_ID_LEN + 1;
        // Flip one bit in every byte position of the body: nonce, ciphertext and tag are all covered.
        for position in prefix_len..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[position] = if bytes[position] == b'0' { b'1' } else { b'0' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(
                matches!(vault.decrypt(&tampered, ROW), Err(VaultError::AuthenticationFailed)),
                "position {position}"
            );
        }
        // Truncated (tag shortened) and extended.
        let truncated = &token[..token.len() - 2];
        assert!(matches!(vault.decrypt(truncated, ROW), Err(VaultError::AuthenticationFailed)));
        assert!(matches!(vault.decrypt(&format!("{token}00"), ROW), Err(VaultError::AuthenticationFailed)));
    }

    #[test]
    fn wrong_associated_data_fails() {
        let vault = vault(&[KEY_A]);
        let token = vault.encrypt(CARD, ROW).unwrap();
        for other in [&b"payout:0190c0de-0000-7000-8000-000000000002"[..], b"", &ROW[..ROW.len() - 1]] {
            assert!(matches!(vault.decrypt(&token, other), Err(VaultError::AuthenticationFailed)));
        }
    }

    #[test]
    fn wrong_key_with_the_same_id_fails_authentication() {
        // A token whose key id was rewritten to name another held key is still refused.
        let vault = vault(&[KEY_A, KEY_B]);
        let token = vault.encrypt(CARD, ROW).unwrap();
        let other_id = vault.previous[0].id.clone();
        let forged = token.replacen(vault.current_key_id(), &other_id, 1);
        assert!(matches!(vault.decrypt(&forged, ROW), Err(VaultError::AuthenticationFailed)));
    }

    #[test]
    fn unknown_key_id_fails() {
        let token = vault(&[KEY_A]).encrypt(CARD, ROW).unwrap();
        let error = vault(&[KEY_B]).decrypt(&token, ROW).unwrap_err();
        let VaultError::UnknownKeyId { key_id } = &error else { panic!("{error:?}") };
        assert_eq!(key_id, vault(&[KEY_A]).current_key_id());
        assert!(error.to_string().contains(key_id.as_str()));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let vault = vault(&[KEY_A]);
        let id = vault.current_key_id().to_owned();
        let valid_body = vault.encrypt(CARD, ROW).unwrap().rsplit(':').next().unwrap().to_owned();
        for token in [
            String::new(),
            CARD.to_owned(),
            format!("v1:{id}"),
            format!("v2:{id}:{valid_body}"),
            format!("V1:{id}:{valid_body}"),
            format!("v1:{}:{valid_body}", &id[..7]),
            format!("v1:zzzzzzzz:{valid_body}"),
            format!("v1:{id}:{}", &valid_body[1..]),
            format!("v1:{id}:{valid_body}:"),
            format!("v1:{id}:xy{valid_body}"),
            format!("v1:{id}:{}", &valid_body[..(NONCE_LEN + TAG_LEN) * 2 - 2]),
        ] {
            let result = vault.decrypt(&token, ROW);
            assert!(matches!(result, Err(VaultError::MalformedToken(_))), "{token:?} gave {result:?}");
        }
    }

    #[test]
    fn rotation_keeps_old_tokens_readable() {
        let old = vault(&[KEY_A]);
        let token = old.encrypt(CARD, ROW).unwrap();
        let rotated = vault(&[KEY_B, KEY_A]);
        assert_eq!(rotated.decrypt(&token, ROW).unwrap(), CARD);
        // New tokens use the new key, which the old vault does not know.
        let fresh = rotated.encrypt(CARD, ROW).unwrap();
        assert!(fresh.starts_with(&format!("v1:{}:", vault(&[KEY_B]).current_key_id())));
        assert!(matches!(old.decrypt(&fresh, ROW), Err(VaultError::UnknownKeyId { .. })));
        // Once the old key is dropped, its tokens no longer decrypt.
        assert!(matches!(vault(&[KEY_B]).decrypt(&token, ROW), Err(VaultError::UnknownKeyId { .. })));
    }

    #[test]
    fn malformed_config_keys_are_refused() {
        let no_keys: [&str; 0] = [];
        assert!(matches!(Vault::from_config(&no_keys), Err(VaultError::NoKeys)));
        let cases = [
            ("", KeyProblem::Empty),
            (" \n", KeyProblem::Empty),
            (&KEY_A[..62], KeyProblem::WrongLength { hex_chars: 62 }),
            (&KEY_A[..63], KeyProblem::WrongLength { hex_chars: 63 }),
            (&format!("{KEY_A}00"), KeyProblem::WrongLength { hex_chars: 66 }),
            (&format!("{}g", &KEY_A[..63]), KeyProblem::NotHex),
            (&format!("0x{}", &KEY_A[..62]), KeyProblem::NotHex),
            ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", KeyProblem::NotHex),
            (&format!("{} {}", &KEY_A[..32], &KEY_A[32..]), KeyProblem::NotHex),
        ];
        for (key, expected) in cases {
            // The bad key comes second so the message must say which one it is.
            let error = Vault::from_config(&[KEY_B, key]).unwrap_err();
            let VaultError::InvalidKey { origin, problem } = &error else { panic!("{key:?} gave {error:?}") };
            assert_eq!(origin, "configured key #2");
            assert_eq!(problem, &expected, "{key:?}");
            if key.trim().len() >= 8 {
                assert!(!error.to_string().contains(key.trim()), "{error} echoes the key");
            }
        }
        assert!(matches!(Vault::from_config(&[KEY_A, KEY_B, KEY_A]), Err(VaultError::DuplicateKey { .. })));
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let vault = vault(&[KEY_A, KEY_B]);
        let debug = format!("{vault:?}");
        let (id_a, id_b) = (vault.current_key_id().to_owned(), vault.previous[0].id.clone());
        assert_eq!(debug, format!("Vault {{ current_key_id: {id_a:?}, previous_key_ids: [{id_b:?}] }}"));
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn development_key_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested").join("data");
        let first = Vault::development(&data_dir).unwrap();
        let path = data_dir.join(DEVELOPMENT_KEY_FILE);
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(&data_dir).unwrap().count(), 1);

        let token = first.encrypt(CARD, ROW).unwrap();
        let second = Vault::development(&data_dir).unwrap();
        assert_eq!(second.current_key_id(), first.current_key_id());
        assert_eq!(second.decrypt(&token, ROW).unwrap(), CARD);
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn development_key_file_tolerates_whitespace_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEVELOPMENT_KEY_FILE);
        fs::write(&path, format!("\n  {KEY_A}  \r\n\n")).unwrap();
        assert_eq!(Vault::development(dir.path()).unwrap().current_key_id(), vault(&[KEY_A]).current_key_id());

        fs::write(&path, "not a key\n").unwrap();
        let error = Vault::development(dir.path()).unwrap_err();
        assert!(matches!(&error, VaultError::InvalidKey { problem: KeyProblem::NotHex, .. }), "{error:?}");
        assert!(error.to_string().contains(&path.display().to_string()));
        assert!(!error.to_string().contains("not a key"));
        // A broken file is reported, not silently replaced: rows may already be encrypted with its key.
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key\n");
    }

    #[test]
    fn concurrent_development_starts_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let barrier = std::sync::Barrier::new(8);
        let ids: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        Vault::development(&data_dir).unwrap().current_key_id().to_owned()
                    })
                })
                .collect();
            handles.into_iter().map(|handle| handle.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
        let on_disk = parse_key(&fs::read_to_string(data_dir.join(DEVELOPMENT_KEY_FILE)).unwrap()).unwrap();
        assert_eq!(key_id(&on_disk), ids[0]);
        assert_eq!(fs::read_dir(&data_dir).unwrap().count(), 1);
    }

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(crate::hex::decode(&crate::hex::encode(&bytes)).unwrap(), bytes);
        assert_eq!(crate::hex::decode("ABcd").unwrap(), vec![0xab, 0xcd]);
        assert!(crate::hex::decode("abc").is_none());
        assert!(crate::hex::decode("+1").is_none());
    }
}
