//! The nf_tables expressions orch's rules are made of (payload, bitwise, cmp, fib, ct, meta,
//! numgen, immediate and verdicts, nat, masq, reject), each encoded as an `NFTA_LIST_ELEM` of a
//! rule's expression list.

use std::net::Ipv4Addr;

use super::wire::Attrs;

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

/// The 16-byte registers 1 and 2 (`NFT_REG_1`, `NFT_REG_2`).
pub const REG1: u32 = 1;
pub const REG2: u32 = 2;

const NFPROTO_IPV4: u32 = 2;

/// Header a payload load reads from.
#[derive(Clone, Copy)]
pub enum Base {
    Network = 1,
    Transport = 2,
}

/// One expression of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr(Attrs);

fn expr(name: &str, data: Option<Attrs>) -> Expr {
    let mut a = Attrs::new().str(NFTA_EXPR_NAME, name);
    if let Some(data) = data {
        a = a.nested(NFTA_EXPR_DATA, data);
    }
    Expr(a)
}

fn data(value: &[u8]) -> Attrs {
    Attrs::new().bytes(NFTA_DATA_VALUE, value)
}

/// Loads `len` bytes at `offset` of the `base` header into `reg`.
pub fn payload(reg: u32, base: Base, offset: u32, len: u32) -> Expr {
    expr("payload", Some(Attrs::new().be32(1, reg).be32(2, base as u32).be32(3, offset).be32(4, len)))
}

/// `reg = reg & mask` (xor 0) over `mask.len()` bytes.
pub fn and_mask(reg: u32, mask: &[u8]) -> Expr {
    expr("bitwise", Some(bitwise_attrs(reg, mask, &vec![0u8; mask.len()])))
}

/// Compares `reg` with `value`: equal (`eq`) or not equal; the rule stops when it fails.
pub fn cmp(reg: u32, eq: bool, value: &[u8]) -> Expr {
    expr("cmp", Some(Attrs::new().be32(1, reg).be32(2, if eq { 0 } else { 1 }).nested(3, data(value))))
}

/// Loads the route type of the destination address (`fib daddr type`) into `reg`.
pub fn fib_daddr_type(reg: u32) -> Expr {
    fib_type(reg, 1 << 1)
}

/// Loads the route type of the source address (`fib saddr type`) into `reg`.
pub fn fib_saddr_type(reg: u32) -> Expr {
    fib_type(reg, 1 << 0)
}

fn fib_type(reg: u32, flags: u32) -> Expr {
    const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
    expr("fib", Some(Attrs::new().be32(1, reg).be32(2, NFT_FIB_RESULT_ADDRTYPE).be32(3, flags)))
}

/// `fib daddr type local` (or `fib saddr type local` when not `daddr`).
pub fn addr_is_local(daddr: bool) -> [Expr; 2] {
    [if daddr { fib_daddr_type(REG1) } else { fib_saddr_type(REG1) }, cmp(REG1, true, &rtn_local())]
}

/// The value `fib ... type` leaves for a local address (RTN_LOCAL, in host byte order).
pub fn rtn_local() -> [u8; 4] {
    2u32.to_ne_bytes()
}

/// `ct state new` (state bits are in host byte order).
pub fn ct_state_new() -> [Expr; 3] {
    const NFT_CT_STATE: u32 = 0;
    const NEW: u32 = 1 << 3;
    [
        expr("ct", Some(Attrs::new().be32(1, REG1).be32(2, NFT_CT_STATE))),
        and_mask(REG1, &NEW.to_ne_bytes()),
        cmp(REG1, false, &0u32.to_ne_bytes()),
    ]
}

const NFT_META_MARK: u32 = 3;

fn meta_mark_load(reg: u32) -> Expr {
    expr("meta", Some(Attrs::new().be32(1, reg).be32(2, NFT_META_MARK)))
}

/// `meta mark & bit != 0` (marks are in host byte order).
pub fn mark_has(bit: u32) -> [Expr; 3] {
    [meta_mark_load(REG1), and_mask(REG1, &bit.to_ne_bytes()), cmp(REG1, false, &0u32.to_ne_bytes())]
}

/// `meta mark & bit == 0`.
pub fn mark_lacks(bit: u32) -> [Expr; 3] {
    [meta_mark_load(REG1), and_mask(REG1, &bit.to_ne_bytes()), cmp(REG1, true, &0u32.to_ne_bytes())]
}

/// `meta mark set meta mark | bit` (`set`) or `meta mark set meta mark & ~bit`.
pub fn mark_set(bit: u32, set: bool) -> [Expr; 3] {
    let xor = if set { bit } else { 0 };
    [
        meta_mark_load(REG1),
        expr("bitwise", Some(bitwise_attrs(REG1, &(!bit).to_ne_bytes(), &xor.to_ne_bytes()))),
        expr("meta", Some(Attrs::new().be32(2, NFT_META_MARK).be32(3, REG1))),
    ]
}

fn bitwise_attrs(reg: u32, mask: &[u8], xor: &[u8]) -> Attrs {
    Attrs::new().be32(1, reg).be32(2, reg).be32(3, mask.len() as u32).nested(4, data(mask)).nested(5, data(xor))
}

/// `numgen random mod modulus == 0`: true with probability 1/`modulus`.
pub fn one_in(modulus: u32) -> [Expr; 2] {
    const NFT_NG_RANDOM: u32 = 1;
    [expr("numgen", Some(Attrs::new().be32(1, REG1).be32(2, modulus).be32(3, NFT_NG_RANDOM))), cmp(REG1, true, &0u32.to_ne_bytes())]
}

/// `ip saddr @set`: the source address is in `set`.
pub fn saddr_in_set(set: &str) -> [Expr; 2] {
    [payload(REG1, Base::Network, 12, 4), expr("lookup", Some(Attrs::new().str(1, set).be32(2, REG1)))]
}

/// `update @set { ip saddr }`: adds the source address to `set` or refreshes its timeout.
pub fn update_set_with_saddr(set: &str, timeout: std::time::Duration) -> [Expr; 2] {
    const NFT_DYNSET_OP_UPDATE: u32 = 1;
    let attrs = Attrs::new().str(1, set).be32(3, NFT_DYNSET_OP_UPDATE).be32(4, REG1).bytes(6, &(timeout.as_millis() as u64).to_be_bytes());
    [payload(REG1, Base::Network, 12, 4), expr("dynset", Some(attrs))]
}

/// Puts `value` into `reg`.
pub fn immediate(reg: u32, value: &[u8]) -> Expr {
    expr("immediate", Some(Attrs::new().be32(1, reg).nested(2, data(value))))
}

const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

const NFT_REG_VERDICT: u32 = 0;
const NFT_GOTO: i32 = -4;

/// The `nft_data` of a verdict (`NFTA_DATA_VERDICT`).
fn verdict_data(code: i32, chain: Option<&str>) -> Attrs {
    const NFTA_DATA_VERDICT: u16 = 2;
    let mut v = Attrs::new().be32(NFTA_VERDICT_CODE, code as u32);
    if let Some(chain) = chain {
        v = v.str(NFTA_VERDICT_CHAIN, chain);
    }
    Attrs::new().nested(NFTA_DATA_VERDICT, v)
}

/// The `nft_data` of `goto chain` (a verdict map element's value).
pub fn goto_data(chain: &str) -> Attrs {
    verdict_data(NFT_GOTO, Some(chain))
}

fn verdict(code: i32, chain: Option<&str>) -> Expr {
    expr("immediate", Some(Attrs::new().be32(1, NFT_REG_VERDICT).nested(2, verdict_data(code, chain))))
}

/// The verdict `accept`.
pub fn accept() -> Expr {
    verdict(1, None)
}

/// The verdict `drop`.
pub fn drop_packet() -> Expr {
    verdict(0, None)
}

/// The verdict `return` (back to the calling chain).
pub fn ret() -> Expr {
    verdict(-5, None)
}

/// `jump chain` (comes back) or `goto chain` (does not).
pub fn jump(chain: &str, goto: bool) -> Expr {
    verdict(if goto { NFT_GOTO } else { -3 }, Some(chain))
}

/// `reject with tcp reset` (`tcp`) or `reject with icmp type port-unreachable`.
pub fn reject(tcp: bool) -> Expr {
    const NFT_REJECT_ICMP_UNREACH: u32 = 0;
    const NFT_REJECT_TCP_RST: u32 = 1;
    const ICMP_PORT_UNREACH: u8 = 3;
    let attrs = if tcp {
        Attrs::new().be32(1, NFT_REJECT_TCP_RST)
    } else {
        Attrs::new().be32(1, NFT_REJECT_ICMP_UNREACH).bytes(2, &[ICMP_PORT_UNREACH])
    };
    expr("reject", Some(attrs))
}

/// Destination NAT to the IPv4 address in `addr_reg` and the port in `port_reg`.
pub fn dnat(addr_reg: u32, port_reg: u32) -> Expr {
    const NFT_NAT_DNAT: u32 = 1;
    expr("nat", Some(Attrs::new().be32(1, NFT_NAT_DNAT).be32(2, NFPROTO_IPV4).be32(3, addr_reg).be32(5, port_reg)))
}

/// Source NAT to the outgoing interface's address, with fully random source ports.
pub fn masquerade() -> Expr {
    const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 1 << 4;
    expr("masq", Some(Attrs::new().be32(1, NF_NAT_RANGE_PROTO_RANDOM_FULLY)))
}

/// `ip saddr`/`ip daddr` (offset 12 / 16 of the IPv4 header) within (`inside`) or outside `net`.
pub fn ip_addr_in(source: bool, network: Ipv4Addr, netmask: Ipv4Addr, inside: bool) -> [Expr; 3] {
    [payload(REG1, Base::Network, if source { 12 } else { 16 }, 4), and_mask(REG1, &netmask.octets()), cmp(REG1, inside, &network.octets())]
}

/// `ip protocol proto`.
pub fn ip_protocol(proto: u8) -> [Expr; 2] {
    [payload(REG1, Base::Network, 9, 1), cmp(REG1, true, &[proto])]
}

/// `ip protocol proto th dport port`.
pub fn proto_port(proto: u8, port: u16) -> [Expr; 4] {
    let [p, c] = ip_protocol(proto);
    [p, c, payload(REG1, Base::Transport, 2, 2), cmp(REG1, true, &port.to_be_bytes())]
}

/// `ip saddr addr` / `ip daddr addr`.
pub fn ip_addr_is(source: bool, addr: Ipv4Addr) -> [Expr; 2] {
    [payload(REG1, Base::Network, if source { 12 } else { 16 }, 4), cmp(REG1, true, &addr.octets())]
}

/// `dnat to addr:port`.
pub fn dnat_to(addr: Ipv4Addr, port: u16) -> [Expr; 3] {
    [immediate(REG1, &addr.octets()), immediate(REG2, &port.to_be_bytes()), dnat(REG1, REG2)]
}

/// The 4-byte registers concatenated keys are loaded into (`NFT_REG32_00` on).
const REG32_00: u32 = 8;

/// nft's type ids of key fields (for `nft list`; the kernel only stores them).
const TYPE_IPADDR: u32 = 7;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;

/// The type id of a concatenation of `types` (nft's `concat_type_alloc`).
const fn concat_type(types: &[u32]) -> u32 {
    let (mut t, mut i) = (0, 0);
    while i < types.len() {
        t = (t << 6) | types[i];
        i += 1;
    }
    t
}

/// `meta l4proto` into `reg`.
fn l4proto_load(reg: u32) -> Expr {
    const NFT_META_L4PROTO: u32 = 16;
    expr("meta", Some(Attrs::new().be32(1, reg).be32(2, NFT_META_L4PROTO)))
}

/// Looks the key in registers from `REG32_00` on up in `set`: the rule goes on when it is
/// there (`verdicts` false) or takes the verdict the map holds for it.
fn lookup(set: &str, verdicts: bool) -> Expr {
    let mut attrs = Attrs::new().str(1, set).be32(2, REG32_00);
    if verdicts {
        attrs = attrs.be32(3, NFT_REG_VERDICT);
    }
    expr("lookup", Some(attrs))
}

/// Key type and length of [`service_key`]: `ipv4_addr . inet_proto . inet_service`.
pub const SERVICE_KEY: (u32, u32) = (concat_type(&[TYPE_IPADDR, TYPE_INET_PROTO, TYPE_INET_SERVICE]), 12);
/// Key type and length of [`node_port_key`]: `inet_proto . inet_service`.
pub const NODE_PORT_KEY: (u32, u32) = (concat_type(&[TYPE_INET_PROTO, TYPE_INET_SERVICE]), 8);
/// Key type and length of [`address_pair_key`]: `ipv4_addr . ipv4_addr`.
pub const ADDRESS_PAIR_KEY: (u32, u32) = (concat_type(&[TYPE_IPADDR, TYPE_IPADDR]), 8);

/// The key `addr . proto . port` (each field padded to 4 bytes, as registers hold them).
pub fn service_key(addr: Ipv4Addr, proto: u8, port: u16) -> Vec<u8> {
    let mut key = addr.octets().to_vec();
    key.extend(node_port_key(proto, port));
    key
}

/// The key `proto . port`.
pub fn node_port_key(proto: u8, port: u16) -> Vec<u8> {
    let [hi, lo] = port.to_be_bytes();
    vec![proto, 0, 0, 0, hi, lo, 0, 0]
}

/// The key `source . destination`.
pub fn address_pair_key(source: Ipv4Addr, destination: Ipv4Addr) -> Vec<u8> {
    [source.octets(), destination.octets()].concat()
}

/// `ip daddr . meta l4proto . th dport vmap @map`.
pub fn service_vmap(map: &str) -> [Expr; 4] {
    [payload(REG32_00, Base::Network, 16, 4), l4proto_load(REG32_00 + 1), payload(REG32_00 + 2, Base::Transport, 2, 2), lookup(map, true)]
}

/// `meta l4proto . th dport vmap @map`.
pub fn node_port_vmap(map: &str) -> [Expr; 3] {
    [l4proto_load(REG32_00), payload(REG32_00 + 1, Base::Transport, 2, 2), lookup(map, true)]
}

/// `ip saddr . ip daddr @set`.
pub fn address_pair_in(set: &str) -> [Expr; 3] {
    [payload(REG32_00, Base::Network, 12, 4), payload(REG32_00 + 1, Base::Network, 16, 4), lookup(set, false)]
}

/// The expression list attribute of a rule.
pub fn list(exprs: impl IntoIterator<Item = Expr>) -> Attrs {
    exprs.into_iter().fold(Attrs::new(), |a, e| a.nested(NFTA_LIST_ELEM, e.0))
}
