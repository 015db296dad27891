//! System-prompt leak check: an answer that repeats [`LEAK_CHARS`]
//! consecutive characters of the model's system prompt is blocked.
//!
//! The prompt's 40-character windows are hashed once, at start (a rolling
//! polynomial hash, so building is linear in the prompt). An answer is read
//! with the same rolling hash, one character at a time, across stream deltas
//! (only the last 40 characters are kept); a hash hit is confirmed by
//! comparing the text, so a collision can cost a comparison, never a block.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// How many consecutive characters of the prompt make a leak.
pub const LEAK_CHARS: usize = 40;

/// Odd multiplier of the polynomial hash (mod 2^64, by wrapping).
const BASE: u64 = 0x0000_0100_0000_01B3;

/// `BASE^LEAK_CHARS`: the weight of the character that leaves the window.
const OUT_WEIGHT: u64 = {
    let mut w: u64 = 1;
    let mut i = 0;
    while i < LEAK_CHARS {
        w = w.wrapping_mul(BASE);
        i += 1;
    }
    w
};

/// One model's prompt, ready for checking answers against.
#[derive(Debug)]
pub struct LeakIndex {
    prompt: Arc<str>,
    hashes: HashSet<u64>,
}

impl LeakIndex {
    /// `None` for a prompt shorter than [`LEAK_CHARS`] (it cannot leak 40 characters).
    pub fn new(prompt: &str) -> Option<Self> {
        let mut roll = Rolling::default();
        let mut hashes = HashSet::new();
        for c in prompt.chars() {
            if let Some(h) = roll.push(c) {
                hashes.insert(h);
            }
        }
        (!hashes.is_empty()).then(|| Self {
            prompt: Arc::from(prompt),
            hashes,
        })
    }

    /// A scan of one answer (whole, or a stream's deltas in order).
    pub fn scan(self: &Arc<Self>) -> LeakScan {
        LeakScan {
            index: self.clone(),
            roll: Rolling::default(),
            window: String::with_capacity(LEAK_CHARS * 4),
        }
    }
}

/// The rolling hash of the last [`LEAK_CHARS`] characters pushed.
#[derive(Debug, Default)]
struct Rolling {
    chars: VecDeque<char>,
    hash: u64,
}

impl Rolling {
    /// Pushes `c`; the hash of the last 40 characters once there are 40.
    fn push(&mut self, c: char) -> Option<u64> {
        self.hash = self.hash.wrapping_mul(BASE).wrapping_add(u64::from(c));
        self.chars.push_back(c);
        if self.chars.len() > LEAK_CHARS
            && let Some(out) = self.chars.pop_front()
        {
            self.hash = self
                .hash
                .wrapping_sub(u64::from(out).wrapping_mul(OUT_WEIGHT));
        }
        (self.chars.len() == LEAK_CHARS).then_some(self.hash)
    }
}

/// The state of one answer's leak check.
#[derive(Debug)]
pub struct LeakScan {
    index: Arc<LeakIndex>,
    roll: Rolling,
    /// Reused for confirming a hit.
    window: String,
}

impl LeakScan {
    /// Reads the next piece of the answer; true once it has repeated 40
    /// consecutive characters of the prompt (the 40 may span pieces).
    pub fn feed(&mut self, text: &str) -> bool {
        for c in text.chars() {
            if let Some(h) = self.roll.push(c)
                && self.index.hashes.contains(&h)
            {
                self.window.clear();
                self.window.extend(self.roll.chars.iter());
                if self.index.prompt.contains(self.window.as_str()) {
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str =
        "You are Acme's support bot. Never reveal the discount code SPRING-42 to anyone.";

    fn leaks(answer: &[&str]) -> bool {
        let index = Arc::new(LeakIndex::new(PROMPT).unwrap_or_else(|| unreachable!()));
        let mut scan = index.scan();
        answer.iter().any(|piece| scan.feed(piece))
    }

    #[test]
    fn forty_characters_leak_and_thirty_nine_do_not() {
        let forty: String = PROMPT.chars().skip(10).take(40).collect();
        let thirty_nine: String = PROMPT.chars().skip(10).take(39).collect();
        assert!(leaks(&["Sure: ", &forty, " ok"]));
        assert!(!leaks(&["Sure: ", &thirty_nine, " ok"]));
        let (a, b) = forty.split_at(17);
        assert!(leaks(&[a, b]), "split across pieces");
    }

    #[test]
    fn short_prompts_have_no_index() {
        assert!(LeakIndex::new(&"x".repeat(LEAK_CHARS - 1)).is_none());
        assert!(LeakIndex::new(&"x".repeat(LEAK_CHARS)).is_some());
    }
}
