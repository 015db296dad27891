//! Prices and cost: what one answer cost in USD, from its usage and the
//! price of the target that answered (USD per million tokens).

use axum::http::HeaderValue;

use crate::chat::Usage;
use crate::config::Price;

/// `input_tokens × input + output_tokens × output`, ÷ 10⁶. An unpriced
/// target (and the mock, a cache hit, a FAQ answer, a fallback) has the zero price.
pub fn of(price: Price, usage: Usage) -> f64 {
    (f64::from(usage.input_tokens) * price.input + f64::from(usage.output_tokens) * price.output)
        / 1_000_000.0
}

/// `x-chatgate-cost-usd`: fixed-point with 10 decimals, so a one-token
/// cost of a cheap model still shows (and no exponent notation).
pub fn header(cost: f64) -> HeaderValue {
    HeaderValue::from_str(&format!("{cost:.10}")).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_tokens_times_price_per_million() {
        let price = Price {
            input: 0.15,
            output: 0.60,
        };
        let usage = Usage {
            input_tokens: 1000,
            output_tokens: 500,
        };
        let cost = of(price, usage);
        assert!((cost - 0.00045).abs() < 1e-12, "{cost}");
        assert_eq!(header(cost), "0.0004500000");
        assert_eq!(of(Price::default(), usage), 0.0);
    }
}
