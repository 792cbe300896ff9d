//! Prometheus metrics: requests and latency by route and status, explanation cache hits and
//! misses, generation time.

use axum::http::StatusCode;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    cache: IntCounterVec,
    generation: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "recgpt_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "recgpt_http_request_duration_seconds",
                "HTTP request latency by route and status",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route", "status"],
        )
        .expect("valid metric");
        let cache = IntCounterVec::new(
            Opts::new(
                "recgpt_explanation_cache_total",
                "explanation cache lookups by result (hit, miss)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let generation = Histogram::with_opts(
            HistogramOpts::new(
                "recgpt_explanation_generation_seconds",
                "time to generate the missing explanations of one request",
            )
            .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
        )
        .expect("valid metric");
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(cache.clone()),
            Box::new(generation.clone()),
        ] {
            registry.register(m).expect("unique metric names");
        }
        Self {
            registry,
            requests,
            latency,
            cache,
            generation,
        }
    }

    pub fn request(&self, route: &str, status: StatusCode, seconds: f64) {
        let status = status.as_str();
        self.requests.with_label_values(&[route, status]).inc();
        self.latency
            .with_label_values(&[route, status])
            .observe(seconds);
    }

    pub fn cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache.with_label_values(&[result]).inc();
    }

    pub fn generation(&self, seconds: f64) {
        self.generation.observe(seconds);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding never fails");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
