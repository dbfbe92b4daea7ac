//! nftables through netlink (no `nft` binary): tables, base and regular chains and rules built
//! as [`Step`]s and sent as one nf_tables transaction ([`transact`]). A table is replaced by
//! deleting and recreating it inside the same batch, so there is never a moment without rules.
//! Two tables use it: `ip orch` ([`nat`], masquerade and hostPorts) and `ip orch-proxy`
//! ([`crate::net::proxy`], Services).

pub(crate) mod expr;
pub mod nat;
pub(crate) mod wire;

use std::path::Path;
use std::time::Duration;

use rtnetlink::sys::protocols::NETLINK_NETFILTER;
use rtnetlink::sys::Socket;

pub(crate) use self::expr::Expr;
use self::wire::{Attrs, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST};
use super::netns::{self, NetnsError};
pub use nat::{NatRules, PodHostPort, TABLE};

const NFPROTO_IPV4: u8 = 2;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
pub(crate) const NF_INET_PRE_ROUTING: u32 = 0;
pub(crate) const NF_INET_FORWARD: u32 = 2;
pub(crate) const NF_INET_LOCAL_OUT: u32 = 3;
pub(crate) const NF_INET_POST_ROUTING: u32 = 4;
pub(crate) const PRIORITY_DSTNAT: i32 = -100;
pub(crate) const PRIORITY_SRCNAT: i32 = 100;
pub(crate) const PRIORITY_FILTER: i32 = 0;
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables netlink socket: {0}")]
    Socket(std::io::Error),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("nftables refused {step}: {}", std::io::Error::from_raw_os_error(*.errno))]
    Refused { step: String, errno: i32 },
    #[error("nftables did not confirm the transaction of {expected} steps")]
    Unconfirmed { expected: usize },
}

/// One nf_tables message of a transaction, with what it does (for errors).
pub(crate) struct Step {
    pub what: String,
    kind: u16,
    flags: u16,
    attrs: Attrs,
}

fn step(what: impl Into<String>, msg: u16, flags: u16, attrs: Attrs) -> Step {
    Step { what: what.into(), kind: (NFNL_SUBSYS_NFTABLES << 8) | msg, flags: NLM_F_REQUEST | flags, attrs }
}

/// The steps that delete `table` (family `ip`) whether or not it exists.
pub(crate) fn delete_table(table: &str) -> Vec<Step> {
    let attrs = Attrs::new().str(1, table);
    vec![
        // Create-if-missing then delete makes the delete safe when the table is not there.
        step(format!("creating table {table}"), NFT_MSG_NEWTABLE, NLM_F_CREATE, attrs.clone()),
        step(format!("deleting the old table {table}"), NFT_MSG_DELTABLE, 0, attrs),
    ]
}

/// The first steps of a transaction that replaces `table` (family `ip`) by an empty one.
pub(crate) fn replace_table(table: &str) -> Vec<Step> {
    let mut steps = delete_table(table);
    steps.push(step(format!("creating table {table}"), NFT_MSG_NEWTABLE, NLM_F_CREATE, Attrs::new().str(1, table)));
    steps
}

/// A base chain `name` of `kind` ("nat", "filter") on `hook` at `priority`.
pub(crate) fn base_chain(table: &str, name: &str, kind: &str, hook: u32, priority: i32) -> Step {
    let hook_attrs = Attrs::new().be32(1, hook).be32(2, priority as u32);
    let attrs = Attrs::new().str(1, table).str(3, name).nested(4, hook_attrs).str(7, kind);
    step(format!("creating chain {name}"), NFT_MSG_NEWCHAIN, NLM_F_CREATE, attrs)
}

/// A regular chain `name`, reached only by jump or goto.
pub(crate) fn regular_chain(table: &str, name: &str) -> Step {
    step(format!("creating chain {name}"), NFT_MSG_NEWCHAIN, NLM_F_CREATE, Attrs::new().str(1, table).str(3, name))
}

/// A set `name` of IPv4 addresses that rules add to and refresh (`flags dynamic, timeout`),
/// whose elements expire `timeout` after they were last refreshed; `id` is unique in the batch.
pub(crate) fn address_set(table: &str, name: &str, id: u32, timeout: Duration) -> Step {
    const NFT_SET_TIMEOUT: u32 = 0x10;
    const NFT_SET_EVAL: u32 = 0x20;
    const TYPE_IPADDR: u32 = 7;
    let attrs = Attrs::new()
        .str(1, table)
        .str(2, name)
        .be32(3, NFT_SET_TIMEOUT | NFT_SET_EVAL)
        .be32(4, TYPE_IPADDR)
        .be32(5, 4)
        .be32(10, id)
        .bytes(11, &(timeout.as_millis() as u64).to_be_bytes());
    step(format!("creating set {name}"), NFT_MSG_NEWSET, NLM_F_CREATE, attrs)
}

/// A set `name` of keys `key_len` bytes long, of (nft's) type `key_type`: a verdict map
/// (`type … : verdict`) when `verdicts`, else a plain set; `id` is unique in the batch.
pub(crate) fn keyed_set(table: &str, name: &str, id: u32, key_type: u32, key_len: u32, verdicts: bool) -> Step {
    const NFT_SET_MAP: u32 = 0x8;
    const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
    let mut attrs = Attrs::new().str(1, table).str(2, name).be32(3, if verdicts { NFT_SET_MAP } else { 0 });
    attrs = attrs.be32(4, key_type).be32(5, key_len);
    if verdicts {
        attrs = attrs.be32(6, NFT_DATA_VERDICT);
    }
    step(format!("creating set {name}"), NFT_MSG_NEWSET, NLM_F_CREATE, attrs.be32(10, id))
}

/// Adds (`add`) or deletes `elements` (key and, in a verdict map, the chain to go to) of set
/// `set`, in as few messages as the attribute size allows.
pub(crate) fn set_elements<'a>(
    table: &str,
    set: &str,
    add: bool,
    elements: impl IntoIterator<Item = (&'a [u8], Option<&'a str>)>,
) -> Vec<Step> {
    /// Stays well below the 64 KiB a netlink attribute can hold.
    const CHUNK_BYTES: usize = 48 * 1024;
    let (msg, verb) = if add { (NFT_MSG_NEWSETELEM, "adding") } else { (NFT_MSG_DELSETELEM, "deleting") };
    let mut steps = Vec::new();
    let mut list = Attrs::new();
    let mut count = 0;
    let mut flush = |list: &mut Attrs, count: &mut usize| {
        if *count > 0 {
            let attrs = Attrs::new().str(1, table).str(2, set).nested(3, std::mem::take(list));
            steps.push(step(format!("{verb} {count} elements of set {set}"), msg, NLM_F_CREATE, attrs));
            *count = 0;
        }
    };
    for (key, goto) in elements {
        let mut elem = Attrs::new().nested(1, Attrs::new().bytes(1, key));
        if let (true, Some(chain)) = (add, goto) {
            elem = elem.nested(2, expr::goto_data(chain));
        }
        list = list.nested(1, elem);
        count += 1;
        if list.len() >= CHUNK_BYTES {
            flush(&mut list, &mut count);
        }
    }
    flush(&mut list, &mut count);
    steps
}

/// Deletes every rule of `chain`.
pub(crate) fn flush_chain(table: &str, chain: &str) -> Step {
    step(format!("flushing chain {chain}"), NFT_MSG_DELRULE, 0, Attrs::new().str(1, table).str(2, chain))
}

/// Deletes the (empty, unreferenced) chain `chain`.
pub(crate) fn delete_chain(table: &str, chain: &str) -> Step {
    step(format!("deleting chain {chain}"), NFT_MSG_DELCHAIN, 0, Attrs::new().str(1, table).str(3, chain))
}

/// Deletes the (unreferenced) set `set`.
pub(crate) fn delete_set(table: &str, set: &str) -> Step {
    step(format!("deleting set {set}"), NFT_MSG_DELSET, 0, Attrs::new().str(1, table).str(2, set))
}

/// A rule appended to `chain`.
pub(crate) fn rule(table: &str, chain: &str, what: String, exprs: Vec<Expr>) -> Step {
    let attrs = Attrs::new().str(1, table).str(2, chain).nested(4, expr::list(exprs));
    step(format!("rule {what} in chain {chain}"), NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, attrs)
}

/// Sends `steps` as one batch into the namespace at `netns` (this process's when `None`) and
/// waits until the kernel has acknowledged the last of them. Only the last step asks for an
/// acknowledgement (errors are always reported), so batches of any size fit the receive buffer;
/// the kernel handles the whole batch inside the send, so earlier errors arrive first.
pub(crate) fn transact(netns: Option<&Path>, mut steps: Vec<Step>) -> Result<(), NftError> {
    let Some(last) = steps.last_mut() else { return Ok(()) };
    last.flags |= NLM_F_ACK;
    let socket = netns::run_in(netns, || Socket::new(NETLINK_NETFILTER))?.map_err(NftError::Socket)?;
    let subsys = NFNL_SUBSYS_NFTABLES;
    let mut batch = wire::message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, 0, subsys, &Attrs::new());
    for (i, s) in steps.iter().enumerate() {
        batch.extend(wire::message(s.kind, s.flags, i as u32 + 1, NFPROTO_IPV4, 0, &s.attrs));
    }
    batch.extend(wire::message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, steps.len() as u32 + 1, 0, subsys, &Attrs::new()));
    let tv = libc::timeval { tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
    set_option(&socket, libc::SO_RCVTIMEO, &tv).map_err(NftError::Socket)?;
    // Like nft(8): a send buffer as large as the batch (the kernel wants it in one message).
    let size = batch.len().min(i32::MAX as usize / 2) as libc::c_int;
    set_option(&socket, libc::SO_SNDBUFFORCE, &size).map_err(NftError::Socket)?;
    socket.send(&batch, 0).map_err(NftError::Socket)?;
    let mut refused = None;
    loop {
        let buf = match socket.recv_from_full() {
            Ok((buf, _)) => buf,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(refused.unwrap_or(NftError::Unconfirmed { expected: steps.len() }))
            }
            Err(e) => return Err(NftError::Socket(e)),
        };
        for reply in wire::parse_replies(&buf) {
            let Some(code) = reply.error else { continue };
            if code != 0 && refused.is_none() {
                let step = steps.get((reply.seq as usize).wrapping_sub(1)).map_or("the batch".to_string(), |s| s.what.clone());
                refused = Some(NftError::Refused { step, errno: -code });
                // The rest of the replies are already queued: do not wait long for them.
                set_option(&socket, libc::SO_RCVTIMEO, &libc::timeval { tv_sec: 0, tv_usec: 200_000 }).map_err(NftError::Socket)?;
            }
            if reply.seq as usize == steps.len() {
                return refused.map_or(Ok(()), Err);
            }
        }
    }
}

pub(crate) fn set_option<T>(socket: &Socket, option: libc::c_int, value: &T) -> std::io::Result<()> {
    // SAFETY: a valid socket fd and a value of the size the option expects.
    let ret = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            libc::SOL_SOCKET,
            option,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
