-- report.lua: wrk done() hook printing one machine-readable line,
--   BENCHJSON {"requests": ..., "duration_s": ..., "rps": ..., "latency_ms": {...}, "errors": {...}}
-- contrib/bench/run appends this file to the scenario script it hands wrk
-- (a script without it still works with wrk, printing wrk's own summary).
function done(summary, latency, requests)
   local e = summary.errors
   local secs = summary.duration / 1e6
   local function ms(us) return us / 1000.0 end
   io.write(string.format(
      'BENCHJSON {"requests": %d, "duration_s": %.3f, "rps": %.1f, "bytes": %d, ' ..
      '"latency_ms": {"p50": %.3f, "p90": %.3f, "p99": %.3f, "p999": %.3f, ' ..
      '"max": %.3f, "mean": %.3f, "stdev": %.3f}, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
      summary.requests, secs, secs > 0 and summary.requests / secs or 0, summary.bytes,
      ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
      ms(latency:percentile(99.9)), ms(latency.max), ms(latency.mean), ms(latency.stdev),
      e.connect, e.read, e.write, e.status, e.timeout))
end
