//! Who the service is: the users whose MUNGE credentials may report any job's samples, and
//! whose `[distributor] job_name` jobs are the service's own scrapers (never analysed or mailed).
//!
//! The rule, in one place: the users listed in `[ingest] service_users` (root by default), plus
//! the user this process runs as. The second half is what makes the shipped units work without
//! editing anything: the server and the distributor both run as `turingwatch`, so the scraper
//! jobs the distributor places run as `turingwatch` too, and their reports must be taken.
//! Trusting the server's own uid grants nothing new: whoever can get a MUNGE credential for that
//! uid can already write the server's store directly. A distributor run as some other user must
//! be listed in `service_users`.

/// The service users of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUsers {
    /// Names from `[ingest] service_users`.
    configured: Vec<String>,
    /// The uid this process runs as (effective).
    own_uid: u32,
    /// Its user name, when the user database knows it.
    own_name: Option<String>,
}

impl ServiceUsers {
    /// The rule for `configured` names and a process running as `own_uid` (`own_name`).
    pub fn new(configured: &[String], own_uid: u32, own_name: Option<String>) -> ServiceUsers {
        ServiceUsers { configured: configured.to_vec(), own_uid, own_name }
    }

    /// The rule for this process (`[ingest] service_users` plus the user it runs as; its name
    /// is looked up once per process).
    pub fn of_this_process(configured: &[String]) -> ServiceUsers {
        static OWN: std::sync::OnceLock<(u32, Option<String>)> = std::sync::OnceLock::new();
        let (uid, name) = OWN.get_or_init(|| {
            // SAFETY: geteuid cannot fail and touches no memory.
            let uid = unsafe { libc::geteuid() };
            (uid, user_name(uid))
        });
        ServiceUsers::new(configured, *uid, name.clone())
    }

    /// Whether a report authenticated as `user` (`uid`) may carry any job's samples.
    pub fn trusts(&self, user: &str, uid: u32) -> bool {
        uid == self.own_uid || self.is_named(user)
    }

    /// Whether `user` (a name, as accounting records carry it) is a service user.
    pub fn is_named(&self, user: &str) -> bool {
        self.own_name.as_deref() == Some(user) || self.configured.iter().any(|u| u == user)
    }

    /// Every service user's name: the configured ones, then this process's own (if not listed).
    pub fn names(&self) -> Vec<String> {
        let mut names = self.configured.clone();
        if let Some(own) = &self.own_name {
            if !names.contains(own) {
                names.push(own.clone());
            }
        }
        names
    }
}

/// The name of `uid` in the user database (`getpwuid_r`), if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid value for an out parameter.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf's length is what we pass.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string inside buf.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> ServiceUsers {
        ServiceUsers::new(&["root".to_string()], 999, Some("turingwatch".into()))
    }

    #[test]
    fn the_user_the_server_runs_as_is_trusted_without_being_listed() {
        let rule = rule();
        assert!(rule.trusts("turingwatch", 999));
        // The uid decides, not the name a credential's uid maps to on the server.
        assert!(rule.trusts("renamed", 999));
        assert!(rule.is_named("turingwatch"));
    }

    #[test]
    fn listed_users_stay_trusted_and_others_are_not() {
        let rule = rule();
        assert!(rule.trusts("root", 0), "root stays a service user by default");
        assert!(!rule.trusts("alice", 1001));
        assert!(!rule.trusts("turingwatch2", 1000), "a similar name is not the service user");
        assert!(!rule.is_named("alice"));
        let listed = ServiceUsers::new(&["root".into(), "twdist".into()], 999, None);
        assert!(listed.trusts("twdist", 1234) && !listed.trusts("alice", 1001));
    }

    #[test]
    fn names_list_the_own_user_once() {
        assert_eq!(rule().names(), ["root", "turingwatch"]);
        let own_listed = ServiceUsers::new(&["root".into(), "turingwatch".into()], 999, Some("turingwatch".into()));
        assert_eq!(own_listed.names(), ["root", "turingwatch"]);
        let unnamed = ServiceUsers::new(&["root".into()], 4242, None);
        assert_eq!(unnamed.names(), ["root"]);
        assert!(unnamed.trusts("", 4242), "a uid without a name is still this process's own");
    }

    #[test]
    fn this_process_knows_its_own_user() {
        // SAFETY: as above.
        let uid = unsafe { libc::geteuid() };
        let rule = ServiceUsers::of_this_process(&[]);
        assert!(rule.trusts("nobody-by-that-name", uid));
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }
}
