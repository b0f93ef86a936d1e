//! MUNGE credentials decoded in-process through libmunge, loaded at run time.
//!
//! Why: decoding through the `unmunge` program costs a fork and exec per report, which under a
//! flood of junk credentials is the most expensive thing a peer can make the server do before it
//! is known who they are. `munge_decode` is one round trip over munged's Unix socket.
//!
//! Why `dlopen` rather than linking: a build host without `libmunge-dev` still builds, and a
//! server on a host without `libmunge.so.2` still runs (through `unmunge`, said once in the log).
//! Only the five functions below are used; their C prototypes are those of munge.h (MUNGE
//! 0.5.x, the ABI of `libmunge.so.2`).
//!
//! Every call makes and destroys its own context, so calls from several threads never share
//! state; the caller bounds how many run at once.

use super::{Decoded, MungeError};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::net::Ipv4Addr;

type MungeCtx = *mut c_void;
type DecodeFn = unsafe extern "C" fn(
    cred: *const c_char,
    ctx: MungeCtx,
    buf: *mut *mut c_void,
    len: *mut c_int,
    uid: *mut libc::uid_t,
    gid: *mut libc::gid_t,
) -> c_int;
type EncodeFn = unsafe extern "C" fn(cred: *mut *mut c_char, ctx: MungeCtx, buf: *const c_void, len: c_int) -> c_int;
type CtxCreateFn = unsafe extern "C" fn() -> MungeCtx;
type CtxDestroyFn = unsafe extern "C" fn(ctx: MungeCtx);
type CtxGetFn = unsafe extern "C" fn(ctx: MungeCtx, opt: c_int, ...) -> c_int;
type StrErrorFn = unsafe extern "C" fn(err: c_int) -> *const c_char;

/// munge.h `munge_opt_t` values used here.
const MUNGE_OPT_ADDR4: c_int = 5;
const MUNGE_OPT_ENCODE_TIME: c_int = 6;
/// munge.h `munge_err_t`: success; what a bad credential gives (an empty or overlong one
/// included); munged not reachable.
const EMUNGE_SUCCESS: c_int = 0;
const EMUNGE_BAD_ARG: c_int = 2;
const EMUNGE_BAD_LENGTH: c_int = 3;
const EMUNGE_SOCKET: c_int = 6;
const EMUNGE_BAD_CRED: c_int = 8;
const EMUNGE_CRED_UNAUTHORIZED: c_int = 18;

/// The library's entry points, valid while `_library` is loaded.
pub struct LibMunge {
    _library: libloading::Library,
    decode: DecodeFn,
    encode: EncodeFn,
    ctx_create: CtxCreateFn,
    ctx_destroy: CtxDestroyFn,
    ctx_get: CtxGetFn,
    strerror: StrErrorFn,
}

impl std::fmt::Debug for LibMunge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LibMunge")
    }
}

impl LibMunge {
    /// Loads `libmunge.so.2` (or `path`) and its entry points.
    pub fn load(path: Option<&str>) -> Result<LibMunge, libloading::Error> {
        let name = path.unwrap_or("libmunge.so.2");
        // SAFETY: loading libmunge runs no initialisers beyond the C runtime's; the symbols are
        // read with the prototypes munge.h declares for this ABI version.
        unsafe {
            let library = libloading::Library::new(name)?;
            let decode = *library.get::<DecodeFn>(b"munge_decode\0")?;
            let encode = *library.get::<EncodeFn>(b"munge_encode\0")?;
            let ctx_create = *library.get::<CtxCreateFn>(b"munge_ctx_create\0")?;
            let ctx_destroy = *library.get::<CtxDestroyFn>(b"munge_ctx_destroy\0")?;
            let ctx_get = *library.get::<CtxGetFn>(b"munge_ctx_get\0")?;
            let strerror = *library.get::<StrErrorFn>(b"munge_strerror\0")?;
            Ok(LibMunge { _library: library, decode, encode, ctx_create, ctx_destroy, ctx_get, strerror })
        }
    }

    fn error_text(&self, code: c_int) -> String {
        // SAFETY: munge_strerror returns a static string for every code (unknown ones included).
        let text = unsafe { (self.strerror)(code) };
        if text.is_null() {
            return format!("MUNGE error {code}");
        }
        // SAFETY: non-null, NUL-terminated, static.
        let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
        format!("{text} ({code})")
    }

    /// Decodes `credential` (blocking: one round trip to munged). Bad, expired, rewound,
    /// replayed or unauthorised credentials are [`MungeError::Refused`] with MUNGE's words; a
    /// munged that cannot be reached is [`MungeError::Failed`].
    pub fn decode(&self, credential: &str) -> Result<Decoded, MungeError> {
        let Ok(cred) = CString::new(credential) else {
            return Err(MungeError::Refused { status: "Invalid credential format (8)".into() });
        };
        // SAFETY: a fresh context, destroyed below on every path.
        let ctx = unsafe { (self.ctx_create)() };
        if ctx.is_null() {
            return Err(MungeError::Failed { program: "libmunge".into(), message: "cannot create a context".into() });
        }
        let mut buf: *mut c_void = std::ptr::null_mut();
        let mut len: c_int = 0;
        let mut uid: libc::uid_t = libc::uid_t::MAX;
        let mut gid: libc::gid_t = libc::gid_t::MAX;
        // SAFETY: every out-pointer points at a live local; `cred` outlives the call.
        let code = unsafe { (self.decode)(cred.as_ptr(), ctx, &mut buf, &mut len, &mut uid, &mut gid) };
        let payload = if buf.is_null() {
            String::new()
        } else {
            let bytes = usize::try_from(len).unwrap_or(0);
            // SAFETY: munge_decode allocated `len` bytes at `buf` (plus a NUL) with malloc; we
            // copy them and free the buffer, also on the error codes that still return it.
            let text =
                unsafe { String::from_utf8_lossy(std::slice::from_raw_parts(buf as *const u8, bytes)) }.into_owned();
            // SAFETY: `buf` came from munge_decode's malloc and is not used after this.
            unsafe { libc::free(buf) };
            text
        };
        let mut addr: libc::in_addr = libc::in_addr { s_addr: 0 };
        let mut encoded_at: libc::time_t = 0;
        if code == EMUNGE_SUCCESS {
            // SAFETY: the variadic argument is the pointer type munge.h names for each option.
            unsafe {
                (self.ctx_get)(ctx, MUNGE_OPT_ADDR4, &mut addr as *mut libc::in_addr);
                (self.ctx_get)(ctx, MUNGE_OPT_ENCODE_TIME, &mut encoded_at as *mut libc::time_t);
            }
        }
        // SAFETY: created above, not used after this.
        unsafe { (self.ctx_destroy)(ctx) };
        match code {
            EMUNGE_SUCCESS => Ok(Decoded {
                uid,
                user: user_name(uid).unwrap_or_else(|| uid.to_string()),
                encoded_at: u64::try_from(encoded_at).unwrap_or(0),
                payload,
                encode_addr: Some(Ipv4Addr::from(u32::from_be(addr.s_addr))),
            }),
            EMUNGE_BAD_ARG | EMUNGE_BAD_LENGTH | EMUNGE_BAD_CRED..=EMUNGE_CRED_UNAUTHORIZED => {
                Err(MungeError::Refused { status: self.error_text(code) })
            }
            EMUNGE_SOCKET => Err(MungeError::Failed { program: "munged".into(), message: self.error_text(code) }),
            _ => Err(MungeError::Failed { program: "libmunge".into(), message: self.error_text(code) }),
        }
    }

    /// A credential for `payload` as this process's uid and gid, with munged's defaults (one
    /// round trip over its socket; what the `munge` program does without its fork and exec).
    pub fn encode(&self, payload: &[u8]) -> Result<String, MungeError> {
        let failed = |message: String| MungeError::Failed { program: "libmunge".into(), message };
        let len = c_int::try_from(payload.len()).map_err(|_| failed("payload too long".into()))?;
        let mut cred: *mut c_char = std::ptr::null_mut();
        // SAFETY: a NULL context selects munged's defaults (munge.h); `payload` is valid for
        // `len` bytes and `cred` points at a live local.
        let code = unsafe { (self.encode)(&mut cred, std::ptr::null_mut(), payload.as_ptr().cast(), len) };
        let text = if cred.is_null() {
            None
        } else {
            // SAFETY: munge_encode returned a NUL-terminated string allocated with malloc; it is
            // copied, then freed.
            let text = unsafe { CStr::from_ptr(cred) }.to_string_lossy().into_owned();
            // SAFETY: `cred` came from munge_encode's malloc and is not used after this.
            unsafe { libc::free(cred.cast()) };
            Some(text)
        };
        match (code, text) {
            (EMUNGE_SUCCESS, Some(text)) => Ok(text),
            (EMUNGE_SOCKET, _) => Err(MungeError::Failed { program: "munged".into(), message: self.error_text(code) }),
            _ => Err(failed(self.error_text(code))),
        }
    }
}

/// The login name of `uid` from the password database (NSS), if it has one.
pub fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `passwd` is a plain C struct of integers and pointers; all-zero is valid.
        let mut passwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local; `buf` backs the strings the entry points
        // into and lives until they are copied.
        let rc = unsafe { libc::getpwuid_r(uid, &mut passwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || passwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: getpwuid_r succeeded, so pw_name is a NUL-terminated string inside `buf`.
        return Some(unsafe { CStr::from_ptr(passwd.pw_name) }.to_string_lossy().into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name_and_an_unused_uid_none() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(user_name(4_000_000_000), None);
    }

    #[test]
    fn an_encoded_credential_decodes_to_its_payload_and_this_uid() {
        // Needs libmunge and a running munged (the dev cluster's); without them there is
        // nothing to round-trip through.
        let Ok(munge) = LibMunge::load(None) else { return };
        let credential = match munge.encode(b"payload \x00 bytes") {
            Ok(credential) => credential,
            Err(MungeError::Failed { program, .. }) if program == "munged" => return,
            Err(err) => panic!("encode: {err}"),
        };
        assert!(credential.starts_with("MUNGE:"), "{credential}");
        let decoded = munge.decode(&credential).expect("decodes");
        assert_eq!(decoded.payload, "payload \u{0} bytes");
        // SAFETY: geteuid cannot fail.
        assert_eq!(decoded.uid, unsafe { libc::geteuid() });
        assert!(munge.decode(&credential).is_err(), "a replayed credential is refused");
    }

    #[test]
    fn a_missing_library_is_an_error_not_a_crash() {
        assert!(LibMunge::load(Some("/nonexistent/libmunge.so.2")).is_err());
    }
}
