package binding

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// afterClose is protection.after_close's default, 15 days.
const afterClose = 360 * time.Hour

// TestOrderLifecycle: shipped → delivered → closed, after_sale from closed
// and back; closing ends the binding after_close later, as if it expired
// (calls get the expired prompt, the rental stops), and after_sale before
// that puts the end back where the ttl put it.
func TestOrderLifecycle(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()
		b, err := s.CreateBinding(ctx, shipped("o-1"), t0)
		require.NoError(t, err)
		ttlEnd := t0.Add(720 * time.Hour)

		got, err := s.SetOrderStatus(ctx, b.ID, OrderDelivered, afterClose, t0.Add(24*time.Hour))
		require.NoError(t, err)
		require.Equal(t, OrderDelivered, got.OrderStatus)
		require.Equal(t, ttlEnd, got.ExpiresAt, "delivery does not move the end")
		require.True(t, got.OrderClosedAt.IsZero())

		closed := t0.Add(48 * time.Hour)
		got, err = s.SetOrderStatus(ctx, b.ID, OrderClosed, afterClose, closed)
		require.NoError(t, err)
		require.Equal(t, OrderClosed, got.OrderStatus)
		require.Equal(t, closed, got.OrderClosedAt)
		require.Equal(t, closed.Add(afterClose), got.ExpiresAt)
		require.Equal(t, StatusActive, got.Status)
		raw, err := json.Marshal(got)
		require.NoError(t, err)
		require.Contains(t, string(raw), `"order_closed_at":"2026-11-03T08:00:00Z"`)
		require.Contains(t, string(raw), `"expires_at":"2026-11-18T08:00:00Z"`)

		// Calls go on until after_close has passed, then hear "expired".
		_, err = s.Resolve(ctx, b.Host, b.Extension, "m1", closed.Add(afterClose-time.Second))
		require.NoError(t, err)
		_, err = s.Resolve(ctx, b.Host, b.Extension, "m1", closed.Add(afterClose))
		require.ErrorIs(t, err, ErrExpired)

		// after_sale before the end lifts it; closing again starts over.
		got, err = s.SetOrderStatus(ctx, b.ID, OrderAfterSale, afterClose, closed.Add(100*time.Hour))
		require.NoError(t, err)
		require.Equal(t, ttlEnd, got.ExpiresAt)
		require.True(t, got.OrderClosedAt.IsZero())
		_, err = s.Resolve(ctx, b.Host, b.Extension, "m1", closed.Add(afterClose+time.Hour))
		require.NoError(t, err, "reopened")
		reclosed := closed.Add(200 * time.Hour)
		got, err = s.SetOrderStatus(ctx, b.ID, OrderClosed, afterClose, reclosed)
		require.NoError(t, err)
		require.Equal(t, reclosed.Add(afterClose), got.ExpiresAt)

		// The same status again changes nothing.
		again, err := s.SetOrderStatus(ctx, b.ID, OrderClosed, afterClose, reclosed.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, got.ExpiresAt, again.ExpiresAt)
		require.Equal(t, got.OrderClosedAt, again.OrderClosedAt)

		// Once ended, the order's status moves nothing.
		_, err = s.SetOrderStatus(ctx, b.ID, OrderAfterSale, afterClose, reclosed.Add(afterClose))
		require.ErrorIs(t, err, ErrEnded)
		require.ErrorContains(t, err, "is expired")

		// Closing near the ttl's end keeps the ttl's end.
		late, err := s.CreateBinding(ctx, shipped("o-2"), t0)
		require.NoError(t, err)
		_, err = s.SetOrderStatus(ctx, late.ID, OrderDelivered, afterClose, t0)
		require.NoError(t, err)
		got, err = s.SetOrderStatus(ctx, late.ID, OrderClosed, afterClose, ttlEnd.Add(-time.Hour))
		require.NoError(t, err)
		require.Equal(t, ttlEnd, got.ExpiresAt)

		// A released binding stays released.
		rel, err := s.CreateBinding(ctx, shipped("o-3"), t0)
		require.NoError(t, err)
		_, err = s.Release(ctx, rel.ID, t0.Add(time.Hour))
		require.NoError(t, err)
		_, err = s.SetOrderStatus(ctx, rel.ID, OrderDelivered, afterClose, t0.Add(2*time.Hour))
		require.ErrorIs(t, err, ErrEnded)
		require.ErrorContains(t, err, "is released")
	})
}

// TestOrderStatusRefusals: a move the lifecycle does not allow names
// where the order is, where it was asked to go and where it may go; an
// unknown status lists the valid ones; nothing changes.
func TestOrderStatusRefusals(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()
		b, err := s.CreateBinding(ctx, shipped("o-1"), t0)
		require.NoError(t, err)
		at := t0.Add(time.Hour)
		for _, c := range []struct{ from, to, want string }{
			{OrderShipped, OrderClosed, "order status cannot move from shipped to closed: from shipped it moves to delivered"},
			{OrderShipped, OrderAfterSale, "order status cannot move from shipped to after_sale: from shipped it moves to delivered"},
			{OrderDelivered, OrderShipped, "order status cannot move from delivered to shipped: from delivered it moves to closed or after_sale"},
			{OrderClosed, OrderDelivered, "order status cannot move from closed to delivered: from closed it moves to after_sale"},
			{OrderAfterSale, OrderDelivered, "order status cannot move from after_sale to delivered: from after_sale it moves to closed"},
		} {
			_, err := s.db.ExecContext(ctx, `UPDATE bindings SET order_status = ? WHERE id = ?`, c.from, b.ID)
			require.NoError(t, err)
			_, err = s.SetOrderStatus(ctx, b.ID, c.to, afterClose, at)
			require.ErrorIs(t, err, ErrTransition)
			require.EqualError(t, err, c.want)
			got, err := s.GetBinding(ctx, b.ID)
			require.NoError(t, err)
			require.Equal(t, c.from, got.OrderStatus, "nothing changed")
			require.Equal(t, b.ExpiresAt, got.ExpiresAt)
		}
		for status, want := range map[string]string{
			"shipd":  `invalid order status "shipd": unknown; want shipped, delivered, closed or after_sale`,
			"unpaid": `invalid order status "unpaid": unknown; want shipped, delivered, closed or after_sale`,
			"":       `invalid order status "": none given; want shipped, delivered, closed or after_sale`,
		} {
			_, err := s.SetOrderStatus(ctx, b.ID, status, afterClose, at)
			require.ErrorIs(t, err, ErrInvalid)
			require.EqualError(t, err, want)
		}
		_, err = s.SetOrderStatus(ctx, "b_nope", OrderDelivered, afterClose, at)
		require.ErrorIs(t, err, ErrNotFound)
	})
}

// TestClosedOrderStopsRental: the rental of a closed order's binding
// stops with the binding, after_close after the close: its days are
// counted as if it had expired then.
func TestClosedOrderStopsRental(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		clk := newClock(t0)
		s, _ := be.open(t, clk.option())
		seed(t, s, "17000000001")
		ctx := context.Background()
		rates, err := ParseRates("0.02", "0.00018")
		require.NoError(t, err)
		b, err := s.CreateBinding(ctx, shipped("o-1"), t0)
		require.NoError(t, err)
		_, err = s.SetOrderStatus(ctx, b.ID, OrderDelivered, afterClose, t0.Add(time.Hour))
		require.NoError(t, err)
		// Closed two hours in: the binding lives 2h + 360h, 16 periods.
		_, err = s.SetOrderStatus(ctx, b.ID, OrderClosed, afterClose, t0.Add(2*time.Hour))
		require.NoError(t, err)
		clk.set(t0.Add(2000 * time.Hour))
		days := 0
		for _, month := range []string{"2026-11", "2026-12", "2027-01"} {
			bill, err := s.Bill(ctx, "m1", month, time.UTC, rates, "CNY")
			require.NoError(t, err)
			days += bill.BindingDays
		}
		require.Equal(t, 16, days, "ceil(362h / 24h) periods, not the ttl's 30")
	})
}

// TestOneWayBindings: a binding's calls are stored and reach signalling
// with the binding, on the way to the consignee and on their way back;
// a bad value is refused and nothing stored; renew keeps it.
func TestOneWayBindings(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()
		req := shipped("o-1")
		req.Calls = string(callrec.CallsToConsignee)
		b, err := s.CreateBinding(ctx, req, t0)
		require.NoError(t, err)
		require.Equal(t, callrec.CallsToConsignee, b.Calls)
		got, err := s.Resolve(ctx, b.Host, b.Extension, "m1", t0)
		require.NoError(t, err)
		tgt := got.Target()
		require.Equal(t, callrec.CallsToConsignee, tgt.Calls)
		require.True(t, tgt.Calls.Allows(callrec.DirectionToConsignee))
		cb, err := s.ResolveCallback(ctx, b.Host, "13800138000", t0)
		require.NoError(t, err)
		require.False(t, cb.Calls.Allows(callrec.DirectionCallback), "to_consignee refuses calls back")

		req = shipped("o-2")
		req.Calls = string(callrec.CallsFromConsignee)
		from, err := s.CreateBinding(ctx, req, t0)
		require.NoError(t, err)
		got, err = s.Resolve(ctx, from.Host, from.Extension, "", t0)
		require.NoError(t, err)
		require.False(t, got.Target().Calls.Allows(callrec.DirectionToConsignee), "from_consignee refuses calls to B")
		require.True(t, got.Target().Calls.Allows(callrec.DirectionCallback))
		renewed, err := s.Renew(ctx, from.ID, 0, t0.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, callrec.CallsFromConsignee, renewed.Calls)
		raw, err := json.Marshal(renewed)
		require.NoError(t, err)
		require.Contains(t, string(raw), `"calls":"from_consignee"`)

		def, err := s.CreateBinding(ctx, shipped("o-3"), t0)
		require.NoError(t, err)
		require.Equal(t, callrec.CallsBoth, def.Calls)

		n := countBindings(t, s)
		req = shipped("o-4")
		req.Calls = "inbound"
		_, err = s.CreateBinding(ctx, req, t0)
		require.ErrorIs(t, err, ErrInvalid)
		require.EqualError(t, err, `invalid calls "inbound": want both, to_consignee (no calls back) or from_consignee (no calls to the consignee)`)
		require.Equal(t, n, countBindings(t, s), "nothing stored")
	})
}
