# Sorts `perf script` samples (one blank-line-separated block each: a header
# line, then the stack, innermost frame first) into the parts of a request,
# by the first rule that matches anywhere in the stack, and prints each part's
# share of all samples and how much of that share was spent in the kernel.
BEGIN { RS = ""; FS = "\n" }
{
  stack = $0
  kernel = ($2 ~ /\[kernel\.kallsyms\]/)
  if ($1 ~ /tracing-appende/) part = "log writer thread (tracing-appender)"
  else if (stack ~ /tracing_subscriber|tracing_core::|tracing_appender/) part = "log lines and spans (formatting, on the request)"
  else if (stack ~ /Endpoint::post|reqwest::|hyper::client|hyper_util::client/) part = "upstream call (reqwest/hyper client)"
  else if (stack ~ /chatgate::metrics|metrics_exporter|metrics_util/) part = "metrics"
  else if (stack ~ /hyper::proto::h1::dispatch::Dispatcher<[^\n]*>::poll_write[^\n]*\n[^\n]*(Oneshot|RouteFuture|MapIntoResponse)/ || stack ~ /axum::|tower::|tower_http::|chatgate::(routes|middleware|dispatch|limiter|resilience|chat|models)/) part = "router, middleware, handler (axum/tower/chatgate)"
  else if (stack ~ /hyper::proto|hyper_util::server/) part = "HTTP/1 server (hyper: parse, encode, socket I/O)"
  else if (stack ~ /tokio::runtime/) part = "runtime (scheduler, timers, I/O driver, parking)"
  else part = "other: mostly malloc/free, whose callers are lost (glibc has no frame pointers)"
  n[part]++
  k[part] += kernel
  total++
}
END {
  for (p in n) printf "  %5.1f%%  (kernel %4.1f%%)  %s\n", 100 * n[p] / total, 100 * k[p] / total, p | "sort -rn"
}
