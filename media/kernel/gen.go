package kernel

// The relay program is compiled with clang (Debian's clang package; no
// kernel or libbpf headers needed) into relay_bpfel.o and relay_bpfeb.o,
// committed with their Go loaders, so that building vnum needs no clang.
// Run `go generate ./media/kernel` after changing bpf/relay.c.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -type flow_key -type flow -type rtp_id relay bpf/relay.c
