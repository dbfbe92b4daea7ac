//! The nf_tables expressions orch's rules are made of (payload, bitwise, cmp, fib, immediate,
//! nat, masq, accept), each encoded as an `NFTA_LIST_ELEM` of a rule's expression list.

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
    let zeros = vec![0u8; mask.len()];
    expr("bitwise", Some(Attrs::new().be32(1, reg).be32(2, reg).be32(3, mask.len() as u32).nested(4, data(mask)).nested(5, data(&zeros))))
}

/// Compares `reg` with `value`: equal (`eq`) or not equal; the rule stops when it fails.
pub fn cmp(reg: u32, eq: bool, value: &[u8]) -> Expr {
    expr("cmp", Some(Attrs::new().be32(1, reg).be32(2, if eq { 0 } else { 1 }).nested(3, data(value))))
}

/// Loads the route type of the destination address (`fib daddr type`) into `reg`.
pub fn fib_daddr_type(reg: u32) -> Expr {
    const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
    const NFTA_FIB_F_DADDR: u32 = 1 << 1;
    expr("fib", Some(Attrs::new().be32(1, reg).be32(2, NFT_FIB_RESULT_ADDRTYPE).be32(3, NFTA_FIB_F_DADDR)))
}

/// The value `fib ... type` leaves for a local address (RTN_LOCAL, in host byte order).
pub fn rtn_local() -> [u8; 4] {
    2u32.to_ne_bytes()
}

/// Whether the connection was destination-NATed: `ct status & dnat != 0` (status bits are in
/// host byte order).
pub fn ct_status_dnat(reg: u32) -> [Expr; 3] {
    const NFT_CT_STATUS: u32 = 2;
    const IPS_DST_NAT: u32 = 1 << 5;
    [
        expr("ct", Some(Attrs::new().be32(1, reg).be32(2, NFT_CT_STATUS))),
        and_mask(reg, &IPS_DST_NAT.to_ne_bytes()),
        cmp(reg, false, &0u32.to_ne_bytes()),
    ]
}

/// Puts `value` into `reg`.
pub fn immediate(reg: u32, value: &[u8]) -> Expr {
    expr("immediate", Some(Attrs::new().be32(1, reg).nested(2, data(value))))
}

/// The verdict `accept`.
pub fn accept() -> Expr {
    const NFT_REG_VERDICT: u32 = 0;
    const NFTA_DATA_VERDICT: u16 = 2;
    const NFTA_VERDICT_CODE: u16 = 1;
    const NF_ACCEPT: u32 = 1;
    let verdict = Attrs::new().nested(NFTA_DATA_VERDICT, Attrs::new().be32(NFTA_VERDICT_CODE, NF_ACCEPT));
    expr("immediate", Some(Attrs::new().be32(1, NFT_REG_VERDICT).nested(2, verdict)))
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

/// The expression list attribute of a rule.
pub fn list(exprs: impl IntoIterator<Item = Expr>) -> Attrs {
    exprs.into_iter().fold(Attrs::new(), |a, e| a.nested(NFTA_LIST_ELEM, e.0))
}
