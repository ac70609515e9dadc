// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
//
// vnum's kernel relay: a TC ingress program on the interface that carries
// media.ip. For an RTP packet that arrives at one of a call's relay ports
// from the peer that port learnt, it does what vnum's user-space relay
// does (rewrite the payload type where the legs negotiated different ones)
// and sends the packet on from the other leg's relay port to the other
// peer, checksums fixed, counted in the flow. Everything else goes up the
// stack to vnum's sockets untouched: packets of no flow, RTCP (the port
// above), packets that are not plain RTP, and every packet while vnum is
// not alive to keep its flows (see alive_until).
//
// IPv4 only; an IPv6 call stays in user space.

#include "vnum_bpf.h"

#define MAX_PT 2

// The states of a flow. A flow starts in FLOW_HANDOVER: packets still go
// up to vnum's socket until vnum says it has relayed the last one the
// program sent up (acks), so that packets queued in the socket when the
// flow was installed leave before any the program forwards.
#define FLOW_HANDOVER 1
#define FLOW_FORWARD 2

// Indexes of stats.
enum {
	STAT_FWD_FIB,      // forwarded to the next hop a FIB lookup gave
	STAT_FWD_NEIGH,    // forwarded with bpf_redirect_neigh (no forwarding on the interface)
	STAT_FWD_LOOPBACK, // forwarded on loopback
	STAT_UP_HANDOVER,  // sent up while vnum relays the packets queued before the flow
	STAT_UP_NOT_RTP,   // a flow's packet that is not plain RTP: vnum decides
	STAT_UP_ROUTE,     // no route the program can take (local, too big, unreachable)
	STAT_UP_STALE,     // vnum stopped renewing alive_until
	STAT_MAX,
};

// flow_key names one direction of a call: packets from peer to the relay
// port local. All fields in network byte order.
struct flow_key {
	__be32 local_ip;
	__be32 peer_ip;
	__be16 local_port;
	__be16 peer_port;
};

// rtp_id identifies an RTP packet by its header (RFC 3550 §5.1): the
// sequence number alone repeats every 65536 packets.
struct rtp_id {
	__be32 ts;
	__be32 ssrc;
	__be16 seq;
	__u16 valid;
};

// flow is one direction's rewriting (written by vnum at install) and its
// counts and handover state (written by the program).
struct flow {
	__be32 out_src_ip;
	__be32 out_dst_ip;
	__be16 out_src_port;
	__be16 out_dst_port;
	__u8 pt_from[MAX_PT]; // 0xff: unused
	__u8 pt_to[MAX_PT];
	__u32 state;
	__u64 packets;
	__u64 bytes; // RTP bytes (UDP payload)
	__u64 last_seen; // bpf_ktime_get_ns of the last packet forwarded
	struct rtp_id up; // the last packet sent up while in FLOW_HANDOVER
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); // set by vnum at load from its port range
	__type(key, struct flow_key);
	__type(value, struct flow);
} flows SEC(".maps");

// acks holds, per flow in FLOW_HANDOVER, the last packet vnum relayed.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct flow_key);
	__type(value, struct rtp_id);
} acks SEC(".maps");

// alive_until is a bpf_ktime_get_ns deadline vnum renews every second: a
// vnum that died (its program left attached by cls_bpf) forwards nothing
// a few seconds later, its flows all going up to sockets no one holds.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} alive_until SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// Set by vnum at load: the interface the program is attached to, whether
// it is loopback (no FIB, no MACs), and the TTL vnum's own packets leave
// with.
volatile const __u32 cfg_ifindex = 0;
volatile const __u32 cfg_loopback = 0;
volatile const __u32 cfg_ttl = 64;

#define IP_OFF ETH_HLEN
#define UDP_OFF (IP_OFF + 20)
#define RTP_OFF (UDP_OFF + 8)
#define RTP_MIN 12
#define IP_CSUM_OFF (IP_OFF + 10)
#define UDP_CSUM_OFF (UDP_OFF + 6)

static __always_inline void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &i);
	if (v)
		*v += 1;
}

static __always_inline int up(__u32 why)
{
	count(why);
	return TC_ACT_UNSPEC;
}

// plain_rtp reports whether the RTP packet of rtp_len bytes at RTP_OFF is
// framed as RFC 3550 says, as vnum's parser (pion/rtp) reads it: version
// 2, its CSRCs, header extension and padding within the packet. A packet
// vnum would refuse goes up for vnum to count it.
static __always_inline int plain_rtp(struct __sk_buff *skb, __u8 b0, __u32 rtp_len)
{
	if ((b0 >> 6) != 2 || rtp_len < RTP_MIN)
		return 0;
	__u32 hlen = RTP_MIN + 4 * (b0 & 0x0f);
	if (b0 & 0x10) {
		__be16 xlen;
		if (hlen + 4 > rtp_len || bpf_skb_load_bytes(skb, RTP_OFF + hlen + 2, &xlen, 2))
			return 0;
		hlen += 4 + 4 * (__u32)bpf_ntohs(xlen);
	}
	if (hlen > rtp_len)
		return 0;
	if (b0 & 0x20) {
		__u8 pad;
		if (rtp_len <= hlen || bpf_skb_load_bytes(skb, RTP_OFF + rtp_len - 1, &pad, 1))
			return 0;
		if (pad == 0 || hlen + pad > rtp_len)
			return 0;
	}
	return 1;
}

enum { VIA_LOOPBACK, VIA_FIB, VIA_NEIGH };

SEC("tc")
int vnum_relay(struct __sk_buff *skb)
{
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (data + RTP_OFF + RTP_MIN > end) {
		if (skb->len < RTP_OFF + RTP_MIN || bpf_skb_pull_data(skb, RTP_OFF + RTP_MIN))
			return TC_ACT_UNSPEC;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		if (data + RTP_OFF + RTP_MIN > end)
			return TC_ACT_UNSPEC;
	}
	struct iphdr *ip = data + IP_OFF;
	// IP options and fragments stay with the stack.
	if (ip->ver_ihl != 0x45 || ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)))
		return TC_ACT_UNSPEC;
	struct udphdr *udp = data + UDP_OFF;
	struct flow_key key = {
		.local_ip = ip->daddr,
		.peer_ip = ip->saddr,
		.local_port = udp->dest,
		.peer_port = udp->source,
	};
	struct flow *f = bpf_map_lookup_elem(&flows, &key);
	if (!f)
		return TC_ACT_UNSPEC;

	__u32 zero = 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 *alive = bpf_map_lookup_elem(&alive_until, &zero);
	if (!alive || now > *alive)
		return up(STAT_UP_STALE);

	__u32 ip_len = bpf_ntohs(ip->tot_len);
	__u32 udp_len = bpf_ntohs(udp->len);
	// A GRO super-packet, or lengths that disagree, are the stack's.
	if (skb->gso_segs > 1 || udp_len < 8 || ip_len != udp_len + 20 || skb->len < IP_OFF + ip_len)
		return up(STAT_UP_NOT_RTP);
	__u8 *rtp = data + RTP_OFF;
	__u8 b0 = rtp[0], b1 = rtp[1];
	struct rtp_id id = {.valid = 1};
	__builtin_memcpy(&id.seq, rtp + 2, 2);
	__builtin_memcpy(&id.ts, rtp + 4, 4);
	__builtin_memcpy(&id.ssrc, rtp + 8, 4);
	__u8 tos = ip->tos;
	// The fields the flow rewrites, as they came.
	__be32 old_addrs[2] = {ip->saddr, ip->daddr};
	__be32 old_l4[2] = {0, 0}; // the ports, then RTP's first 16 bits
	__be32 old_ttl = 0;        // TTL and protocol, then 0
	__builtin_memcpy(&old_l4[0], &udp->source, 4);
	__builtin_memcpy(&old_l4[1], rtp, 2);
	__builtin_memcpy(&old_ttl, &ip->ttl, 2);
	// From here until they are derived again the packet pointers are not
	// used: the helpers below may move the packet.
	__u32 rtp_len = udp_len - 8;
	if (!plain_rtp(skb, b0, rtp_len))
		return up(STAT_UP_NOT_RTP);

	__be32 new_addrs[2] = {f->out_src_ip, f->out_dst_ip};
	__be16 new_sport = f->out_src_port, new_dport = f->out_dst_port;

	// Until vnum has relayed the last packet sent up, the socket may still
	// hold packets older than this one: this one goes up behind them.
	int handover = f->state != FLOW_FORWARD;
	if (handover) {
		struct rtp_id *ack = bpf_map_lookup_elem(&acks, &key);
		if (!ack || !ack->valid || !f->up.valid || ack->seq != f->up.seq || ack->ts != f->up.ts ||
		    ack->ssrc != f->up.ssrc) {
			f->up = id;
			return up(STAT_UP_HANDOVER);
		}
	}

	int via = VIA_LOOPBACK;
	struct bpf_fib_lookup fib = {};
	if (!cfg_loopback) {
		fib.family = AF_INET;
		fib.tos = tos;
		fib.l4_protocol = IPPROTO_UDP;
		fib.sport = new_sport;
		fib.dport = new_dport;
		fib.tot_len = ip_len;
		fib.ifindex = cfg_ifindex;
		fib.ipv4_src = new_addrs[0];
		fib.ipv4_dst = new_addrs[1];
		long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
		if (rc == BPF_FIB_LKUP_RET_SUCCESS && fib.ifindex == cfg_ifindex)
			via = VIA_FIB;
		else if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED || rc == BPF_FIB_LKUP_RET_NO_NEIGH)
			// A host that does not forward (ip_forward off) still sends
			// its own packets: route and resolve the next hop as for them.
			via = VIA_NEIGH;
		else {
			if (handover)
				f->up = id;
			return up(STAT_UP_ROUTE);
		}
	}
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	if (data + RTP_OFF + RTP_MIN > end)
		return up(STAT_UP_NOT_RTP); // cannot be: checked above
	ip = data + IP_OFF;
	udp = data + UDP_OFF;
	rtp = data + RTP_OFF;
	if (handover)
		f->state = FLOW_FORWARD;

	__sync_fetch_and_add(&f->packets, 1);
	__sync_fetch_and_add(&f->bytes, rtp_len);
	f->last_seen = now;

	// The payload type, as vnum's relay maps it (marker bit kept).
	__u8 pt = b1 & 0x7f, to = pt;
	if (f->pt_from[0] == pt)
		to = f->pt_to[0];
	else if (f->pt_from[1] == pt)
		to = f->pt_to[1];

	// The new header, written in place (a program that writes the packet
	// gets it unshared first).
	ip->saddr = new_addrs[0];
	ip->daddr = new_addrs[1];
	ip->ttl = cfg_ttl;
	udp->source = new_sport;
	udp->dest = new_dport;
	rtp[1] = (b1 & 0x80) | (to & 0x7f);
	__be32 new_l4[2] = {0, 0}, new_ttl = 0;
	__builtin_memcpy(&new_l4[0], &udp->source, 4);
	__builtin_memcpy(&new_l4[1], rtp, 2);
	__builtin_memcpy(&new_ttl, &ip->ttl, 2);
	if (via == VIA_FIB) {
		__builtin_memcpy(data, fib.dmac, 6);
		__builtin_memcpy(data + 6, fib.smac, 6);
	}

	// The checksums, by the difference of what changed: the IP header's
	// for the addresses and the TTL; UDP's for the pseudo-header's
	// addresses (kept right even where the checksum is left to the
	// device), the ports and the payload type. A zero UDP checksum (none,
	// RFC 768) stays zero.
	__s64 d_addrs = bpf_csum_diff(old_addrs, 8, new_addrs, 8, 0);
	__s64 d_ip = bpf_csum_diff(&old_ttl, 4, &new_ttl, 4, (__u32)d_addrs);
	__s64 d_l4 = bpf_csum_diff(old_l4, 8, new_l4, 8, 0);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, 0, (__u32)d_ip, 0);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0, (__u32)d_addrs, BPF_F_MARK_MANGLED_0 | BPF_F_PSEUDO_HDR);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0, (__u32)d_l4, BPF_F_MARK_MANGLED_0);

	// A receive timestamp must not pass for a departure time (fq).
	skb->tstamp = 0;
	switch (via) {
	case VIA_FIB:
		count(STAT_FWD_FIB);
		return bpf_redirect(cfg_ifindex, 0);
	case VIA_NEIGH:
		count(STAT_FWD_NEIGH);
		return bpf_redirect_neigh(cfg_ifindex, 0, 0, 0);
	default:
		count(STAT_FWD_LOOPBACK);
		return bpf_redirect(cfg_ifindex, 0);
	}
}

char __license[] SEC("license") = "GPL";
