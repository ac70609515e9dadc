package binding

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/protection"
)

// TestMerchantBlock: an operator's block through a binding, without a
// caller, is of the binding's merchant: it holds for its other bindings
// to the same consignee, and for those made later, but not for another
// merchant's binding to them, nor for the merchant's calls to another
// consignee, nor for PSTN callers; removing it lifts it.
func TestMerchantBlock(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()
		p := capped(t, 0, 0)
		b1 := bindTo(t, s, "m1", "o-1", consigneeB, t0)
		b2 := bindTo(t, s, "m1", "o-2", consigneeB, t0)
		other := bindTo(t, s, "m1", "o-3", consigneeOther, t0)
		foreign := bindTo(t, s, "m2", "o-9", consigneeB, t0)

		blk, err := s.AddBlock(ctx, b1.ID, "", t0.Add(time.Hour))
		require.NoError(t, err)
		require.Regexp(t, `^k_[0-9a-f]{16}$`, blk.ID)
		require.Equal(t, Block{ID: blk.ID, Binding: b1.ID, Merchant: "m1", Caller: "", Source: BlockByOperator,
			CreatedAt: t0.Add(time.Hour)}, blk)

		require.Equal(t, protection.Blocked, verdict(t, s, fromAccount(b1), p, t0))
		require.Equal(t, protection.Blocked, verdict(t, s, fromAccount(b2), p, t0), "the merchant's other binding to B")
		later := bindTo(t, s, "m1", "o-4", consigneeB, t0.Add(2*time.Hour))
		require.Equal(t, protection.Blocked, verdict(t, s, fromAccount(later), p, t0), "and its bindings to come")
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(foreign), p, t0), "another merchant")
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(other), p, t0), "another consignee")
		require.Equal(t, protection.Allow, verdict(t, s, fromNumber(b1, "+8613700137000"), p, t0), "a courier")

		_, err = s.AddBlock(ctx, b2.ID, "", t0)
		require.ErrorIs(t, err, ErrExists)
		require.ErrorContains(t, err, "block "+blk.ID)
		require.NotContains(t, err.Error(), "3912345678")

		require.NoError(t, s.RemoveBlock(ctx, blk.ID))
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(b2), p, t0), "removed: lifted")
		require.ErrorIs(t, s.RemoveBlock(ctx, blk.ID), ErrNotFound)
	})
}

// TestNumberBlock: a block of a PSTN caller holds for every binding to
// the consignee, whoever's, and not for the merchants' accounts; the
// consignee's own block (their keys) is idempotent.
func TestNumberBlock(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()
		p := capped(t, 0, 0)
		b1 := bindTo(t, s, "m1", "o-1", consigneeB, t0)
		foreign := bindTo(t, s, "m2", "o-9", consigneeB, t0)
		const courier = "+8613700137000"

		blk, created, err := s.BlockFromConsignee(ctx, b1.ID, "", callrec.CallerNumber, courier, t0)
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, courier, blk.Caller)
		require.Equal(t, BlockByConsignee, blk.Source)
		again, created, err := s.BlockFromConsignee(ctx, b1.ID, "", callrec.CallerNumber, "137 0013 7000", t0.Add(time.Hour))
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, blk, again, "a second 9 keeps the first block")

		require.Equal(t, protection.Blocked, verdict(t, s, fromNumber(b1, courier), p, t0))
		require.Equal(t, protection.Blocked, verdict(t, s, fromNumber(foreign, courier), p, t0), "through any binding to B")
		require.Equal(t, protection.Allow, verdict(t, s, fromNumber(b1, "+8613600136000"), p, t0))
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(b1), p, t0))

		// The operator blocks the same number by a binding: it exists.
		_, err = s.AddBlock(ctx, foreign.ID, "13700137000", t0)
		require.ErrorIs(t, err, ErrExists)
		_, err = s.AddBlock(ctx, foreign.ID, "not a number", t0)
		require.ErrorIs(t, err, ErrInvalid)
		_, err = s.AddBlock(ctx, "b_nope", "", t0)
		require.ErrorIs(t, err, ErrNotFound)

		// The consignee blocks a merchant by keying 9 after its account's call.
		mb, created, err := s.BlockFromConsignee(ctx, foreign.ID, "", callrec.CallerAccount, "carol", t0)
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, "m2", mb.Merchant)
		require.Empty(t, mb.Caller)
		require.Equal(t, protection.Blocked, verdict(t, s, fromAccount(foreign), p, t0))
		_, _, err = s.BlockFromConsignee(ctx, foreign.ID, "", callrec.CallerConsignee, "", t0)
		require.ErrorIs(t, err, ErrInvalid)
	})
}

// TestBlockList: blocks are listed by the binding and merchant they were
// made through, oldest first, never with the consignee; an unknown
// merchant is not found.
func TestBlockList(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()
		b1 := bindTo(t, s, "m1", "o-1", consigneeB, t0)
		b2 := bindTo(t, s, "m2", "o-2", consigneeOther, t0)
		k1, err := s.AddBlock(ctx, b1.ID, "+8613700137000", t0.Add(time.Minute))
		require.NoError(t, err)
		k2, err := s.AddBlock(ctx, b2.ID, "", t0.Add(2*time.Minute))
		require.NoError(t, err)
		k3, _, err := s.BlockFromConsignee(ctx, b1.ID, "", callrec.CallerAccount, "alice", t0.Add(3*time.Minute))
		require.NoError(t, err)

		all, err := s.Blocks(ctx, "")
		require.NoError(t, err)
		require.Equal(t, []Block{k1, k2, k3}, all)
		m1, err := s.Blocks(ctx, "m1")
		require.NoError(t, err)
		require.Equal(t, []Block{k1, k3}, m1)
		_, err = s.Blocks(ctx, "m9")
		require.ErrorIs(t, err, ErrNotFound)
		got, err := s.GetBlock(ctx, k2.ID)
		require.NoError(t, err)
		require.Equal(t, k2, got)

		raw, err := json.Marshal(all)
		require.NoError(t, err)
		for _, b := range []string{"3912345678", "5800158000"} {
			require.NotContains(t, string(raw), b)
		}
		var objs []map[string]any
		require.NoError(t, json.Unmarshal(raw, &objs))
		require.Equal(t, map[string]any{"id": k1.ID, "binding": b1.ID, "merchant": "m1", "caller": "+8613700137000",
			"source": "operator", "created_at": "2026-11-01T08:01:00Z"}, objs[0])
	})
}

// TestBlockEvents: a block tells its merchant (consignee.blocked) in its
// own transaction, once: the consignee's keys a second time and an
// operator's block that exists already write nothing more; the event
// names the binding, the order and who blocked, never the consignee.
func TestBlockEvents(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, b1 := hookedBinding(t, be)
		ctx := context.Background()
		b2 := bindTo(t, s, "m1", "o-2", consigneeB, t0)

		blk, created, err := s.BlockFromConsignee(ctx, b1.ID, "", callrec.CallerNumber, "+8613700137000", t0)
		require.NoError(t, err)
		require.True(t, created)
		_, created, err = s.BlockFromConsignee(ctx, b2.ID, "", callrec.CallerNumber, "+8613700137000", t0)
		require.NoError(t, err)
		require.False(t, created, "blocked already")
		_, err = s.AddBlock(ctx, b1.ID, "", t0)
		require.NoError(t, err)
		_, err = s.AddBlock(ctx, b2.ID, "", t0)
		require.ErrorIs(t, err, ErrExists)

		es := listAll(t, s, "m1")
		require.Equal(t, []string{EventConsigneeBlocked, EventConsigneeBlocked}, types(es))
		byWho := map[string]Blocked{}
		for _, e := range es {
			body, err := e.Body()
			require.NoError(t, err)
			listed, err := json.Marshal(e)
			require.NoError(t, err)
			for _, b := range []string{consigneeB, "86" + consigneeB} {
				require.NotContains(t, string(body), b)
				require.NotContains(t, string(listed), b)
			}
			var env struct{ Data Blocked }
			require.NoError(t, json.Unmarshal(body, &env))
			byWho[env.Data.By] = env.Data
		}
		require.Equal(t, Blocked{Block: blk.ID, Binding: b1.ID, Order: "o-1", Caller: "+8613700137000", By: BlockByConsignee},
			byWho[BlockByConsignee])
		op := byWho[BlockByOperator]
		require.Equal(t, Blocked{Block: op.Block, Binding: b1.ID, Order: "o-1", Caller: "", By: BlockByOperator}, op)
		require.NotEqual(t, blk.ID, op.Block)
	})
}

// TestBlockDuringACall: the consignee.blocked event of a block the
// consignee keyed during a call is one of that call's events: it carries
// the call's CDR id and comes in the call's sequence, after its answer and
// before its end, so that the merchant can tie the block to the call; it
// never holds the consignee.
func TestBlockDuringACall(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, b1 := hookedBinding(t, be)
		at := t0.Add(time.Minute)
		c := &callrec.Record{CallID: "a@x", Merchant: "m1", BindingID: b1.ID, Order: b1.Order, Host: b1.Host,
			Extension: b1.Extension, Direction: callrec.DirectionToConsignee, Caller: "alice",
			CallerKind: callrec.CallerAccount, StartedAt: at, RingingAt: at.Add(time.Second),
			AnsweredAt: at.Add(2 * time.Second)}
		require.NoError(t, s.StartCDR(context.Background(), c))
		blk, created, err := s.BlockFromConsignee(context.Background(), b1.ID, c.ID, callrec.CallerAccount, "alice",
			at.Add(3*time.Second))
		require.NoError(t, err)
		require.True(t, created)
		c.EndedAt = at.Add(4 * time.Second)
		require.NoError(t, s.FinishCDR(context.Background(), c, Rates{}))

		es := listAll(t, s, "m1")
		require.Equal(t, []string{EventCallStarted, EventCallRinging, EventCallAnswered, EventConsigneeBlocked,
			EventCallEnded}, types(es))
		for i, e := range es {
			require.Equal(t, c.ID, e.CallID, e.Type)
			require.Equal(t, i+1, e.Sequence, e.Type)
			body, err := e.Body()
			require.NoError(t, err)
			for _, b := range []string{consigneeB, "86" + consigneeB} {
				require.NotContains(t, string(body), b)
			}
		}
		require.JSONEq(t, `{"block":"`+blk.ID+`","binding":"`+b1.ID+`","order":"o-1","caller":"","by":"consignee"}`,
			string(es[3].Data))
	})
}

// hookedBinding opens a store with the seed data, a webhook for merchant
// m1 and a binding of m1 (order o-1) to consigneeB.
func hookedBinding(t *testing.T, be backend) (*Store, *Binding) {
	t.Helper()
	s, _ := be.open(t)
	seed(t, s, "17000000001")
	withHook(t, s, "m1")
	return s, bindTo(t, s, "m1", "o-1", consigneeB, t0)
}
