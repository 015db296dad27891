//! Guard rules at run time: one `RegexSet` per side, checked once per text
//! (a whole answer, each user message) or incrementally over a stream.
//!
//! A stream is not re-scanned whole per delta: the scan keeps a tail of the
//! earlier text, as long as the longest match any output rule can make
//! (`SideRules::window`, at most 4 KiB), and scans that tail plus the new
//! delta. With bounded patterns no match is missed; a match of an unbounded
//! pattern longer than the tail, spanning deltas, is.

use regex::RegexSet;

use crate::config::guard::SideRules;

/// The rules of one side that matched `text`, as indices into `side.rules`,
/// added to `hits` (false when nothing matched: the common case allocates nothing).
pub fn matched(side: &SideRules, text: &str, hits: &mut Vec<bool>) -> bool {
    if side.is_empty() || !side.set.is_match(text) {
        return false;
    }
    mark(&side.set, text, 0, hits);
    true
}

fn mark(set: &RegexSet, text: &str, from: usize, hits: &mut Vec<bool>) {
    hits.resize(set.len(), false);
    for i in set.matches_at(text, from).into_iter() {
        hits[i] = true;
    }
}

/// The output rules' incremental scan of one stream.
#[derive(Debug)]
pub struct Tail {
    text: String,
    /// Bytes of earlier text kept.
    keep: usize,
    /// Where matches may start in `text`: after the one character kept as
    /// context, so `\b` and `^` see what preceded the tail.
    from: usize,
    /// Rules that matched earlier in this stream (each is reported once).
    seen: Vec<bool>,
}

impl Tail {
    pub fn new(side: &SideRules) -> Self {
        Self {
            text: String::new(),
            keep: side.window,
            from: 0,
            seen: vec![false; side.rules.len()],
        }
    }

    /// Scans the tail plus `delta`; the rules that matched for the first
    /// time in this stream (indices into `side.rules`).
    pub fn feed(&mut self, side: &SideRules, delta: &str) -> Vec<usize> {
        self.text.push_str(delta);
        let mut fresh = Vec::new();
        if side.set.is_match_at(&self.text, self.from) {
            let mut hits = Vec::new();
            mark(&side.set, &self.text, self.from, &mut hits);
            for (i, hit) in hits.into_iter().enumerate() {
                if hit && !self.seen[i] {
                    self.seen[i] = true;
                    fresh.push(i);
                }
            }
        }
        self.trim();
        fresh
    }

    /// Keeps the last `keep` bytes (from a character boundary) plus one
    /// character before them as context.
    fn trim(&mut self) {
        let len = self.text.len();
        if len <= self.keep + 4 {
            return;
        }
        let mut cut = len - self.keep;
        while !self.text.is_char_boundary(cut) {
            cut -= 1;
        }
        let context = self.text[..cut]
            .chars()
            .next_back()
            .map_or(0, char::len_utf8);
        self.text.drain(..cut - context);
        self.from = context;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::guard::STREAM_WINDOW_MAX_BYTES;

    fn side(patterns: &[&str], window: usize) -> SideRules {
        SideRules {
            set: RegexSet::new(patterns).unwrap_or_else(|_| RegexSet::empty()),
            rules: (0..patterns.len()).collect(),
            window,
            exact: true,
        }
    }

    #[test]
    fn a_match_split_across_deltas_is_found_once() {
        let s = side(&["secret code", "zzz"], 11);
        let mut tail = Tail::new(&s);
        assert!(tail.feed(&s, "the secr").is_empty());
        assert_eq!(tail.feed(&s, "et code is"), vec![0]);
        assert!(
            tail.feed(&s, " more secret code").is_empty(),
            "once per stream"
        );
    }

    #[test]
    fn the_tail_stays_bounded_and_keeps_word_boundaries() {
        let s = side(&[r"\bcode\b"], STREAM_WINDOW_MAX_BYTES);
        let mut tail = Tail::new(&s);
        for _ in 0..10_000 {
            assert!(tail.feed(&s, "xcodex ").is_empty());
        }
        assert!(tail.text.len() <= STREAM_WINDOW_MAX_BYTES + 8);
        let s = side(&[r"\bcode"], 4);
        let mut tail = Tail::new(&s);
        tail.feed(&s, "aaaaaaaaaaaaaaaaaaaaxc");
        assert!(
            tail.feed(&s, "ode").is_empty(),
            "`x` before the tail is context"
        );
    }
}
