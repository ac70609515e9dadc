// Package protection answers one question for a call that is about to
// ring a consignee: may it ring them now? Virtual numbers exist because
// shoppers fear merchants who call to press for a good review; hiding the
// consignee's number is not enough, so before vnum rings B it applies the
// platform's rules, made stricter by the merchant's own:
//
//   - quiet hours: no call rings B inside a daily window of the
//     consignee's clock (protection.timezone), such as 21:00-08:00;
//   - caps: at most so many calls a local day from one caller (a
//     merchant with all its accounts, or one PSTN number) to one
//     consignee, over all the merchant's bindings to that consignee, and
//     at most so many over one binding's life from every caller together;
//   - blocks: a caller the consignee (or an operator) blocked never rings
//     them again;
//   - one-way bindings: a binding may refuse calls to the consignee, or
//     the consignee's calls back.
//
// The rules are pure: they read a clock and the counts the store keeps
// and return a typed Decision with its reason. The package knows no SIP,
// no media and no database; the store counts calls under a lock and asks
// Decide, and signalling acts on the answer.
package protection
