package binding

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"time"
)

// randomTries is how many random extensions allocate tries on a host
// before it scans the host's whole code.
const randomTries = 64

// hostLoad is a pool number with its count of extensions in use.
type hostLoad struct {
	host  string
	check int
	used  int
}

// allocate picks (X, E) for a new binding inside tx, which holds the write
// lock (BEGIN IMMEDIATE on SQLite, the allocation lock on PostgreSQL, see
// allocTx), so concurrent creates, in this process or on other nodes,
// cannot pick the same pair or two pairs one digit apart.
//
// Extensions on a host are drawn from the code of words whose digit sum is
// the host's ext_check modulo 10. Any two words of such a code differ in at
// least two digits (changing one digit changes the sum), and with n digits
// it has 10^(n-1) words, the most a distance-2 code can have, so a host is
// only full when all its words are taken: 10 with two digits, 100 with
// three, 1,000 with four, 10,000 with five, 100,000 with six. Every candidate is
// still checked against the extensions in use, which keeps the rule even
// for rows written under another extension length or check digit.
func (s *Store) allocate(ctx context.Context, tx *txn, now time.Time) (string, string, error) {
	digits := s.policy.ExtensionDigits
	cutoff := now.Add(-s.policy.Quarantine).UnixNano()
	// Ended bindings whose quarantine has passed give their (X, E) back.
	if _, err := tx.ExecContext(ctx, `UPDATE bindings SET retired = 1, closed = 1
		WHERE retired = 0 AND end_at <= ?`, cutoff); err != nil {
		return "", "", err
	}
	loads, err := hostLoads(ctx, tx)
	if err != nil {
		return "", "", err
	}
	capacity := pow10(digits - 1)
	for _, h := range loads {
		if h.used >= capacity {
			continue
		}
		used, err := usedExtensions(ctx, tx, h.host)
		if err != nil {
			return "", "", err
		}
		ext, ok, err := pickExtension(used, digits, h.check)
		if err != nil {
			return "", "", err
		}
		if ok {
			return h.host, ext, nil
		}
	}
	return "", "", ErrPoolExhausted
}

// hostLoads returns the pool (without the numbers removed from it), least
// used hosts first, in random order
// among equals so that load spreads over the pool.
func hostLoads(ctx context.Context, tx *txn) ([]hostLoad, error) {
	rows, err := tx.QueryContext(ctx, `SELECT n.host, n.ext_check,
		(SELECT COUNT(*) FROM bindings b WHERE b.host = n.host AND b.retired = 0) FROM numbers n
		WHERE n.removed_at IS NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hostLoad
	for rows.Next() {
		var h hostLoad
		if err := rows.Scan(&h.host, &h.check, &h.used); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := len(out) - 1; i > 0; i-- {
		j, err := randInt(i + 1)
		if err != nil {
			return nil, err
		}
		out[i], out[j] = out[j], out[i]
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].used < out[j].used })
	return out, nil
}

// usedExtensions returns the extensions of host that are active or in
// quarantine.
func usedExtensions(ctx context.Context, tx *txn, host string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT extension FROM bindings WHERE host = ? AND retired = 0`, host)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// pickExtension returns a random word of the host's code (digit sum ≡
// check mod 10) at Hamming distance ≥ 2 from every used extension of the
// same length: first by random draws, then by a scan from a random start.
//
// A candidate is checked by looking up itself and its 9·digits one-digit
// neighbours among the used extensions, not by comparing it with each of
// them: with six digits a host holds up to 100,000 extensions, and a scan
// of a nearly full host would otherwise compare billions of pairs.
func pickExtension(used []string, digits, check int) (string, bool, error) {
	same := make(map[string]bool, len(used))
	for _, u := range used {
		if len(u) == digits {
			same[u] = true
		}
	}
	n := pow10(digits - 1)
	buf := make([]byte, digits)
	free := func(e string) bool {
		if same[e] {
			return false
		}
		copy(buf, e)
		for i := range buf {
			for d := byte('0'); d <= '9'; d++ {
				if d != e[i] {
					buf[i] = d
					if same[string(buf)] {
						return false
					}
				}
			}
			buf[i] = e[i]
		}
		return true
	}
	for range randomTries {
		r, err := randInt(n)
		if err != nil {
			return "", false, err
		}
		if e := codeword(r, digits, check); free(e) {
			return e, true, nil
		}
	}
	start, err := randInt(n)
	if err != nil {
		return "", false, err
	}
	for i := range n {
		if e := codeword((start+i)%n, digits, check); free(e) {
			return e, true, nil
		}
	}
	return "", false, nil
}

// codeword returns the extension whose first digits-1 digits are r and
// whose last digit brings the digit sum to check modulo 10.
func codeword(r, digits, check int) string {
	head := fmt.Sprintf("%0*d", digits-1, r)
	sum := 0
	for i := 0; i < len(head); i++ {
		sum += int(head[i] - '0')
	}
	last := ((check-sum)%10 + 10) % 10
	return head + strconv.Itoa(last)
}

func pow10(n int) int {
	p := 1
	for range n {
		p *= 10
	}
	return p
}

// randInt returns a uniform random int in [0, n) from crypto/rand, so that
// extensions cannot be predicted from earlier ones.
func randInt(n int) (int, error) {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		return 0, fmt.Errorf("random: %w", err)
	}
	return int(v.Int64()), nil
}
