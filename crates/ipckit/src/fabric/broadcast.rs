//! Reliable broadcasts over the fabric: mailslot groups
//! ([`MailslotOptions::fabric`](crate::mailslot::MailslotOptions::fabric))
//! and window-message broadcast
//! ([`Messenger::fabric`](crate::message::Messenger::fabric)).
//!
//! Keys (`P` = `ipckit/<namespace>`):
//!
//! - `P/group/<group>`: a mailslot group's messages (reliable pub/sub);
//!   members hold the liveliness token `P/alive/group/<group>/.<zid>`
//!   and answer queries on `P/group/<group>/~ack/<member>`.
//! - `P/msg/broadcast/<id>`: window-message broadcasts, `<id>` the message
//!   id in decimal; receivers hold `P/alive/msg/<name>/.<zid>` and answer
//!   queries on `P/msg/~ack/<member>`.
//!
//! A send first asks the fabric for the members' liveliness tokens (each
//! peer answers after the subscriptions and queryables it declared
//! before them, so the message is then routed to every member seen),
//! queries the `~ack` queryables (each member replies with its member id,
//! `<zid>-<n>`) until every session seen answers (within the send's
//! limit: declarations take a moment to spread after a session opens),
//! publishes to the members that answered, then queries the `~ack`
//! queryables again: that query travels after the message on the same
//! link, so once it is answered the message has reached every member
//! still there, and the sender may exit.
//!
//! Names in keys are one chunk each: `[A-Za-z0-9._-]` as is, every other
//! byte `%XX`. The payload is the message; the attachment says where it
//! came from (see [`origin`]) so that members of the sender's own local
//! namespace, which got it directly, do not get it twice.

use std::path::Path;
use std::time::{Duration, Instant};

use zenoh::Wait as _;

use super::{zerr, Fabric};
use crate::error::{Error, ErrorKind, Result};

/// Largest message a fabric broadcast carries (mailslot group or window
/// message): 16 MiB. A larger one is refused with
/// [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge) before anything is
/// sent.
///
/// ```
/// assert_eq!(ipckit::fabric::MAX_BROADCAST, 16 << 20);
/// ```
pub const MAX_BROADCAST: usize = 16 << 20;

/// Write `name` as one key chunk: `[A-Za-z0-9._-]` as is, every other
/// byte `%XX` (so `/`, wildcards and `~` never appear).
pub(crate) fn chunk(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The name a [`chunk`] stands for; `None` if malformed.
pub(crate) fn unchunk(c: &str) -> Option<String> {
    let b = c.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where a broadcast comes from: this boot of this machine and the local
/// namespace directory (`<boot id>:<directory>`). A member whose own
/// origin it is skips the fabric copy: the sender delivered to it
/// directly.
pub(crate) fn origin(ns_dir: &Path) -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    format!("{}:{}", boot.trim(), ns_dir.display())
}

/// `P/group/<group>`.
pub(crate) fn group_key(fabric: &Fabric, group: &str) -> String {
    format!("{}/group/{}", fabric.key_prefix(), chunk(group))
}

/// `P/msg/broadcast/<id>`.
pub(crate) fn msg_key(fabric: &Fabric, id: u32) -> String {
    format!("{}/msg/broadcast/{id}", fabric.key_prefix())
}

/// `P/msg/broadcast/*`.
pub(crate) fn msg_pattern(fabric: &Fabric) -> String {
    format!("{}/msg/broadcast/*", fabric.key_prefix())
}

/// `P/group/<group>/~ack`: where a group's members answer.
pub(crate) fn group_ack(fabric: &Fabric, group: &str) -> String {
    format!("{}/~ack", group_key(fabric, group))
}

/// `P/msg/~ack`: where window-message receivers answer.
pub(crate) fn msg_ack(fabric: &Fabric) -> String {
    format!("{}/msg/~ack", fabric.key_prefix())
}

/// A member's subscription, acknowledging queryable and liveliness token;
/// dropping it leaves.
pub(crate) struct Member {
    _token: zenoh::liveliness::LivelinessToken,
    _ack: zenoh::query::Queryable<()>,
    _sub: zenoh::pubsub::Subscriber<()>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fabric::Member")
    }
}

/// Subscribe to `key` (each sample to `deliver`: its key, payload and
/// attachment), then answer queries on `<ack>/<member id>`, then declare
/// the token of endpoint `name` of `kind` (so that a sender that sees the
/// queryable or the token also sees the subscription).
pub(crate) fn join(
    fabric: &Fabric,
    kind: &str,
    name: &str,
    key: String,
    ack: String,
    deliver: impl Fn(&str, &[u8], &[u8]) + Send + Sync + 'static,
) -> Result<Member> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let sub = fabric
        .session()
        .declare_subscriber(key)
        .callback(move |sample| {
            let att = sample
                .attachment()
                .map(|a| a.to_bytes().into_owned())
                .unwrap_or_default();
            deliver(
                sample.key_expr().as_str(),
                &sample.payload().to_bytes(),
                &att,
            );
        })
        .wait()
        .map_err(|e| zerr("cannot subscribe to the broadcasts", e).with_name(name))?;
    let id = format!(
        "{}-{}",
        fabric.id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let ack = fabric
        .session()
        .declare_queryable(format!("{ack}/{id}"))
        .callback(move |query| {
            let _ = query.reply(query.key_expr().clone(), id.clone()).wait();
        })
        .wait()
        .map_err(|e| zerr("cannot declare the acknowledging queryable", e).with_name(name))?;
    let token = fabric
        .session()
        .liveliness()
        .declare_token(fabric.alive_key(kind, name))
        .wait()
        .map_err(|e| zerr("cannot declare the liveliness token", e).with_name(name))?;
    Ok(Member {
        _token: token,
        _ack: ack,
        _sub: sub,
    })
}

/// The member ids answering on `<ack>/*`, asking for at most `limit`.
fn acks(fabric: &Fabric, ack: &str, limit: Duration) -> Result<std::collections::BTreeSet<String>> {
    let replies = fabric
        .session()
        .get(format!("{ack}/*"))
        .target(zenoh::query::QueryTarget::All)
        .consolidation(zenoh::query::ConsolidationMode::None)
        .timeout(limit)
        .wait()
        .map_err(|e| zerr("cannot ask the members", e))?;
    let deadline = Instant::now() + limit;
    let mut ids = std::collections::BTreeSet::new();
    while let Ok(Some(r)) = replies.recv_deadline(deadline) {
        if let Ok(sample) = r.result() {
            ids.insert(String::from_utf8_lossy(&sample.payload().to_bytes()).into_owned());
        }
    }
    Ok(ids)
}

/// The owners (Zenoh ids) of the liveliness tokens matching `pattern`,
/// asking the fabric for at most `limit`.
fn owners(
    fabric: &Fabric,
    pattern: String,
    limit: Duration,
) -> Result<std::collections::BTreeSet<String>> {
    let replies = fabric
        .session()
        .liveliness()
        .get(pattern)
        .timeout(limit)
        .wait()
        .map_err(|e| zerr("cannot query liveliness", e))?;
    let deadline = Instant::now() + limit;
    let mut out = std::collections::BTreeSet::new();
    while let Ok(Some(r)) = replies.recv_deadline(deadline) {
        if let Ok(sample) = r.result() {
            let key = sample.key_expr().as_str();
            if let Some(zid) = key.rsplit('/').next().and_then(|c| c.strip_prefix('.')) {
                out.insert(zid.to_string());
            }
        }
    }
    Ok(out)
}

/// Send `payload` on `key` to the members whose tokens match
/// `alive_pattern` and who answer on `<ack>/*` (see the module's doc); how
/// many it reached. Each question waits at most `limit` for the answers.
/// [`ErrorKind::TooLarge`] over [`MAX_BROADCAST`], nothing sent.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send(
    fabric: &Fabric,
    name: &str,
    alive_pattern: String,
    key: String,
    ack: &str,
    payload: &[u8],
    attachment: Vec<u8>,
    limit: Duration,
) -> Result<usize> {
    check_size(name, payload.len())?;
    let deadline = Instant::now() + limit;
    // The sessions with members, from their tokens; then wait (within
    // `limit`) until each one's queryable, declared after its
    // subscription, answers here: the message is then routed to them.
    let seen = owners(fabric, alive_pattern, limit)?;
    let mut members = std::collections::BTreeSet::new();
    let mut pause = Duration::from_millis(1);
    while !seen.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        members = acks(fabric, ack, left)?;
        let answered: std::collections::BTreeSet<&str> = members
            .iter()
            .filter_map(|id| id.rsplit_once('-').map(|(zid, _)| zid))
            .collect();
        if seen.iter().all(|z| answered.contains(z.as_str())) || left.is_zero() {
            break;
        }
        // Declarations still on their way: look again shortly.
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    publish(fabric, name, key, payload, attachment)?;
    if !members.is_empty() {
        // Travels after the message on each link: once it is answered
        // (or the member left), the message is no longer only in this
        // process, which may then exit.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        acks(fabric, ack, left)?;
    }
    Ok(members.len())
}

/// [`ErrorKind::TooLarge`] over [`MAX_BROADCAST`].
pub(crate) fn check_size(name: &str, len: usize) -> Result<()> {
    if len > MAX_BROADCAST {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "a broadcast of {len} bytes is over the fabric's limit of {MAX_BROADCAST} bytes; send less, or use a pipe"
            ),
        )
        .with_name(name)
        .with_needed(len));
    }
    Ok(())
}

/// Publish `payload` on `key`, reliably: blocks while the network is
/// congested rather than drop it.
fn publish(
    fabric: &Fabric,
    name: &str,
    key: String,
    payload: &[u8],
    attachment: Vec<u8>,
) -> Result<()> {
    fabric
        .session()
        .put(key, payload.to_vec())
        .attachment(attachment)
        .congestion_control(zenoh::qos::CongestionControl::Block)
        .wait()
        .map_err(|e| zerr("cannot publish the broadcast", e).with_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_never_start_with_a_tilde() {
        for n in ["ACME", "R1C1", "a/b", "~x", "prix en €", "%", "*", "$*"] {
            let c = chunk(n);
            assert!(!c.starts_with('~'), "{c}");
            assert!(!c.contains(['/', '*', '$', '#', '?']), "{c}");
            assert_eq!(unchunk(&c).as_deref(), Some(n));
        }
        assert_eq!(chunk("a b"), "a%20b");
        assert_eq!(unchunk("%4"), None);
    }
}
