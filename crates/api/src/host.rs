//! Facts about the host that more than one part of badger needs.

/// The kernel's host name (uname nodename).
pub fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}
