//! Secret bytes (the LUKS key, the Vault token): zeroized on drop, locked in memory where the
//! kernel allows, and deliberately without `Debug`/`Display` so they cannot reach a log line
//! by accident. The only way to the bytes is `expose()`, which makes each use easy to audit.

use zeroize::Zeroize;

pub struct Secret {
    bytes: Vec<u8>,
    locked: bool,
}

impl Secret {
    /// Takes ownership of `bytes` without copying them, so no unzeroized copy is left behind.
    pub fn new(bytes: Vec<u8>) -> Self {
        let locked = lock(&bytes);
        Secret { bytes, locked }
    }

    pub fn from_string(s: String) -> Self {
        Self::new(s.into_bytes())
    }

    /// An empty secret that holds up to `capacity` bytes without ever moving them.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::new(Vec::with_capacity(capacity))
    }

    /// Appends `more` if it fits in the capacity (a reallocation would leave an unzeroized
    /// copy behind); false, with nothing appended, when it does not.
    pub fn extend_within(&mut self, more: &[u8]) -> bool {
        if self.bytes.len() + more.len() > self.bytes.capacity() {
            return false;
        }
        self.bytes.extend_from_slice(more);
        true
    }

    /// Drops one trailing newline (askers that end their answer with one).
    pub fn strip_newline(&mut self) {
        if self.bytes.last() == Some(&b'\n') {
            self.bytes.pop();
        }
    }

    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // zeroize() clears the whole allocation (capacity), not just len().
        self.bytes.zeroize();
        if self.locked {
            unlock(&self.bytes);
        }
    }
}

/// Keep the pages out of swap. Failure is not fatal (RLIMIT_MEMLOCK may be 0 for a user);
/// the process is non-dumpable and short-lived either way.
fn lock(bytes: &Vec<u8>) -> bool {
    if bytes.capacity() == 0 {
        return false;
    }
    let Some(ptr) = std::ptr::NonNull::new(bytes.as_ptr() as *mut std::ffi::c_void) else {
        return false;
    };
    // SAFETY: the range is a live allocation owned by the Secret for as long as it is locked.
    unsafe { nix::sys::mman::mlock(ptr, bytes.capacity()).is_ok() }
}

fn unlock(bytes: &Vec<u8>) {
    if let Some(ptr) = std::ptr::NonNull::new(bytes.as_ptr() as *mut std::ffi::c_void) {
        // SAFETY: same allocation that lock() locked; it is still alive here.
        let _ = unsafe { nix::sys::mman::munlock(ptr, bytes.capacity()) };
    }
}

/// Standard base64 with padding, as Vault's transit API uses. `None` if it is not that.
/// The result goes straight into the caller's Secret when it is key material.
pub fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Make the process non-dumpable: no core file, and other users cannot ptrace it or read
/// its /proc/PID/mem. Called first thing in main, before any secret exists.
pub fn harden_process() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        crate::log::warn(format_args!("could not make the process non-dumpable: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expose_returns_the_bytes_given() {
        let s = Secret::from_string("c2VjcmV0".to_string());
        assert_eq!(s.expose(), b"c2VjcmV0");
    }

    #[test]
    fn secrets_are_locked_in_memory() {
        // RLIMIT_MEMLOCK allows a few pages to everyone on current kernels, and root anything.
        let s = Secret::from_string("x".repeat(64));
        assert!(s.locked, "mlock failed: the key could be swapped out");
    }

    #[test]
    fn empty_secret_is_fine() {
        let s = Secret::new(Vec::new());
        assert!(s.expose().is_empty());
    }

    #[test]
    fn base64_decoding_is_strict() {
        assert_eq!(decode_base64(b"YWJj").unwrap(), b"abc");
        assert!(decode_base64(b"YWJj\n").is_none());
        assert!(decode_base64(b"not base64!").is_none());
    }
}
