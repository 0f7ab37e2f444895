//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * An empty program on the same hook as the drop counter: the baseline the
 * drop counter's cost is measured against (hack/bench/dropcost). It is
 * never attached by the agent.
 */
#include "../include/netsonde.h"

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb_empty, struct sk_buff *skb, void *location, unsigned int reason)
{
	return 0;
}
