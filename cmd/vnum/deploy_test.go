package main

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/sip/sipua"
)

// TestDeployNamesOnlyServedSeries: the Grafana dashboard's queries, the
// Prometheus alert rules and the README's list of series name only series
// that a served node's /metrics has after a call (up aside: Prometheus
// makes it), and the README lists every series of vnum's own. A renamed metric fails here, not on an operator's blank
// panel or an alert that can never fire.
func TestDeployNamesOnlyServedSeries(t *testing.T) {
	served := scrapeAfterCall(t)

	names := map[string][]string{} // series name → where it is named
	for _, q := range dashboardQueries(t, filepath.Join("..", "..", "deploy", "grafana", "vnum.json")) {
		for _, n := range promqlMetricNames(q) {
			names[n] = append(names[n], "dashboard: "+q)
		}
	}
	for alert, q := range alertQueries(t, filepath.Join("..", "..", "deploy", "prometheus", "vnum-alerts.yml")) {
		for _, n := range promqlMetricNames(q) {
			names[n] = append(names[n], "alert "+alert)
		}
	}
	readme := map[string]bool{}
	for _, n := range readmeSeries(t) {
		names[n] = append(names[n], "README")
		readme[n] = true
	}
	// And the other way: the README lists every series of vnum's own.
	for name := range served {
		if !strings.HasPrefix(name, "vnum_") {
			continue
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if family, ok := strings.CutSuffix(name, suffix); ok && served[family] {
				name = family
			}
		}
		require.True(t, readme[name], "%s is in /metrics but not in the README's \"What /metrics says\"", name)
	}
	require.Greater(t, len(names), 25)
	for name, where := range names {
		if name == "up" {
			continue
		}
		require.True(t, served[name], "%s is not in /metrics, but is named by %v", name, where)
	}
	// The KPIs this package adds are on the dashboard and alerted on.
	for _, n := range []string{"vnum_store_duration_seconds_bucket", "vnum_store_errors_total", "vnum_bindings_active",
		"vnum_bindings_quarantined", "vnum_binding_capacity", "vnum_trunk_up", "vnum_calls_refused_total",
		"vnum_sip_auth_failures_total", "vnum_sip_sources_blocked",
		// The telecom KPIs (issue 17).
		"vnum_leg_b_seizures_total", "vnum_leg_b_answered_total", "vnum_post_dial_delay_seconds_bucket",
		"vnum_answer_delay_seconds_bucket", "vnum_talk_time_seconds_bucket", "vnum_calls_ended_total",
		"vnum_ivr_outcomes_total", "vnum_dtmf_digits_total", "vnum_rtp_packets_lost_total",
		"vnum_rtcp_packets_lost_total", "vnum_rtcp_fraction_lost_bucket", "vnum_rtcp_jitter_seconds_bucket",
		"vnum_rtp_jitter_seconds_bucket", "vnum_events_pending", "vnum_events_total"} {
		require.Contains(t, names, n)
	}
}

// scrapeAfterCall serves a node, puts one trunk call through it to the
// consignee and hangs it up, fails one digest authentication, then returns the names of the samples and
// families its /metrics has.
func scrapeAfterCall(t *testing.T) map[string]bool {
	t.Helper()
	n, carrier, vnum := startTestNode(t, func(c *config.Config) { c.Trunk.InboundCIDRs = []string{"127.0.0.1/32"} })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := shippedBinding(t)

	courier, err := sipua.NewSoftphone("13700137000", "", nil)
	require.NoError(t, err)
	t.Cleanup(courier.Close)
	d, err := courier.Call(ctx, vnum, b.Host+"-"+b.Extension)
	require.NoError(t, err)
	_, err = carrier.NextSession(15 * time.Second)
	require.NoError(t, err)
	require.NoError(t, d.Bye(ctx))
	require.Eventually(t, func() bool { return n.sip.ActiveCalls() == 0 }, 10*time.Second, 10*time.Millisecond)

	// A softphone with a wrong password, from outside the trunk's
	// addresses: one digest failure.
	mustRun(t, "account", "add", "m1", "alice", "--password", "alice-secret")
	guesser, err := sipua.NewSoftphoneAt(netip.MustParseAddr("127.0.0.2"), "alice", "guess", nil)
	require.NoError(t, err)
	t.Cleanup(guesser.Close)
	require.Equal(t, 403, answer(ctx, t, guesser, challenge(ctx, t, guesser, vnum), "alice", "guess"))

	c := config.Default()
	c.Admin.Listen = "127.0.0.1:0"
	stats := n.stats()
	// serve's call events, whose series the README names too.
	ev := startEvents(c, n.store, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { stopEvents(ev, c) })
	stats.events, stats.eventsPending = ev.Counts, ev.Pending
	url := startTestAdmin(t, c, n.store, stats)
	status, body := get(t, url+"/metrics", "")
	require.Equal(t, 200, status)

	// The new series say what happened: the call's store calls were
	// timed, and the pool holds the one binding.
	require.Regexp(t, `(?m)^vnum_store_duration_seconds_count\{op="resolve"\} [1-9]`, body)
	require.Regexp(t, `(?m)^vnum_store_duration_seconds_count\{op="end_call"\} [1-9]`, body)
	require.Contains(t, body, `vnum_store_errors_total{kind="unavailable",op="resolve"} 0`)
	require.Contains(t, body, "\nvnum_numbers 1\n")
	require.Contains(t, body, "\nvnum_bindings_active 1\n")
	require.Contains(t, body, "\nvnum_bindings_quarantined 0\n")
	require.Contains(t, body, "\nvnum_binding_capacity 1000\n")
	require.Contains(t, body, `vnum_leg_b_failures_total{status="486"} 0`, "leg B's usual statuses exist before their first failure")
	require.Contains(t, body, "\nvnum_sip_auth_failures_total 1\n")
	require.Contains(t, body, "\nvnum_sip_sources_blocked_total 0\n")
	require.Contains(t, body, "\nvnum_sip_sources_blocked 0\n")
	// The telecom KPIs saw the courier's call: one seizure of the trunk,
	// answered, timed, ended answered from a PSTN number.
	require.Contains(t, body, `vnum_leg_b_seizures_total{route="trunk"} 1`)
	require.Contains(t, body, `vnum_leg_b_answered_total{route="trunk"} 1`)
	require.Contains(t, body, `vnum_post_dial_delay_seconds_count{route="trunk"} 1`)
	require.Contains(t, body, `vnum_answer_delay_seconds_count{route="trunk"} 1`)
	require.Contains(t, body, "\nvnum_talk_time_seconds_count 1\n")
	require.Contains(t, body, `vnum_calls_ended_total{caller="number",direction="to_consignee",disposition="answered"} 1`)
	require.Contains(t, body, `vnum_ivr_outcomes_total{outcome="valid"} 1`)
	require.Contains(t, body, `vnum_dtmf_digits_total{method="rfc4733"} 0`)
	require.NotContains(t, body, "13700137000", "the caller's number is in no metric")
	require.NotContains(t, body, consignee[1:], "the consignee's number is in no metric")

	served := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		// A family is named too (a histogram's samples are its _bucket,
		// _sum and _count).
		if family, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ := strings.Cut(family, " ")
			served[name] = true
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		served[name] = true
	}
	require.NoError(t, sc.Err())
	return served
}

// dashboardQueries returns the PromQL of every panel's targets (in rows
// too) and of the dashboard's query variables.
func dashboardQueries(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	type panel struct {
		Type    string  `json:"type"`
		Title   string  `json:"title"`
		Panels  []panel `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var dash struct {
		UID        string  `json:"uid"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.NotEmpty(t, dash.UID)
	var out []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			for _, tg := range p.Targets {
				require.NotEmpty(t, tg.Expr, "panel %q", p.Title)
				out = append(out, tg.Expr)
			}
		}
	}
	walk(dash.Panels)
	// label_values(METRIC, LABEL) names one series.
	labelValues := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		require.NoError(t, json.Unmarshal(v.Query, &q))
		m := labelValues.FindStringSubmatch(q.Query)
		require.NotNil(t, m, "variable query %q", q.Query)
		out = append(out, m[1])
	}
	return out
}

// alertQueries returns each alert rule's expression by the alert's name.
func alertQueries(t *testing.T, path string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&rules))
	out := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert)
			require.NotEmpty(t, r.Expr, r.Alert)
			require.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"], r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], r.Alert)
			require.NotEmpty(t, r.Annotations["description"], r.Alert)
			if r.For != "" {
				_, err := time.ParseDuration(r.For)
				require.NoError(t, err, r.Alert)
			}
			out[r.Alert] = r.Expr
		}
	}
	require.GreaterOrEqual(t, len(out), 10)
	return out
}

// readmeSeries returns the series the README's operator section names
// in backquotes.
func readmeSeries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(raw), "\n### What /metrics says\n")
	require.True(t, ok, "README has no section \"What /metrics says\"")
	section, _, _ = strings.Cut(section, "\n## ")
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile("`((?:vnum|process|go)_[a-z0-9_]+)").FindAllStringSubmatch(section, -1) {
		seen[m[1]] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	require.GreaterOrEqual(t, len(out), 20)
	return out
}

// promqlStrip are the parts of a PromQL expression that hold no metric
// name, in the order they are taken out: string literals, label matchers,
// range and subquery brackets, the label lists of grouping and of vector
// matching, offsets and durations.
var promqlStrip = []*regexp.Regexp{
	regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`"),
	regexp.MustCompile(`\{[^}]*\}`),
	regexp.MustCompile(`\[[^\]]*\]`),
	regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
	regexp.MustCompile(`\boffset\s+-?[0-9a-z]+`),
}

var (
	promqlToken = regexp.MustCompile(`[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?|[a-zA-Z_:][a-zA-Z0-9_:]*`)
	// promqlWords are PromQL's keywords: binary operators, modifiers and
	// the grouping words a stripped list leaves behind.
	promqlWords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
		"group_left", "group_right", "atan2", "inf", "nan", "Inf", "NaN"}
)

// promqlMetricNames returns the metric names a PromQL expression selects:
// what is left once the parts that hold none are taken out, less the
// names of functions and aggregations (followed by "(") and keywords.
func promqlMetricNames(expr string) []string {
	for _, re := range promqlStrip {
		expr = re.ReplaceAllString(expr, " ")
	}
	var out []string
	for _, loc := range promqlToken.FindAllStringIndex(expr, -1) {
		tok := expr[loc[0]:loc[1]]
		if tok[0] >= '0' && tok[0] <= '9' || tok[0] == '.' || slices.Contains(promqlWords, tok) {
			continue
		}
		if strings.HasPrefix(strings.TrimLeft(expr[loc[1]:], " \t\n"), "(") {
			continue
		}
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out
}

// TestPromQLMetricNames pins the extraction the test above relies on.
func TestPromQLMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`vnum_trunk_up == 0`:                    {"vnum_trunk_up"},
		`up{job="vnum"} == 0`:                   {"up"},
		`sum by (instance) (vnum_calls_active)`: {"vnum_calls_active"},
		`histogram_quantile(0.99, sum by (le, op) (rate(vnum_store_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`: {"vnum_store_duration_seconds_bucket"},
		`sum(rate(a_total{reason!="x{y}"}[5m])) / ignoring(reason) group_left(path) b_total offset 1h > bool 1e3`:                       {"a_total", "b_total"},
		`max without (instance) ((vnum_bindings_active + vnum_bindings_quarantined) / vnum_binding_capacity) > 0.8`:                     {"vnum_bindings_active", "vnum_bindings_quarantined", "vnum_binding_capacity"},
		`increase(vnum_sip_panics_total[15m]) > 0 and on(instance) process_open_fds unless c:recorded:rule`:                             {"vnum_sip_panics_total", "process_open_fds", "c:recorded:rule"},
		`sum(rate(x_total[5m])) by (le)`: {"x_total"},
		`topk(5, rate(y_total[1m:10s]))`: {"y_total"},
	} {
		require.Equal(t, want, promqlMetricNames(expr), expr)
	}
}
