// Validate PodMonitor / ServiceMonitor / PrometheusRule objects against the upstream
// prometheus-operator schemas, as compiled by the npm package
// @kubernetes-models/prometheus-operator (the monitoring.coreos.com CRDs are not
// installed on hean's local control plane, so no server-side dry run is possible).
//
//   node monitoring/validate-monitoring-objects.mjs < objects.json   # a JSON array
//
// The package is looked up under $HEAN_NPM_PREFIX (default ~/.cache/hean/npm, where
// .ci/run installs it). Prints one line per object; exits 1 if any is invalid, 2 if
// the package is missing.
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const prefix = process.env.HEAN_NPM_PREFIX || join(homedir(), ".cache", "hean", "npm");
const pkg = join(prefix, "node_modules", "@kubernetes-models", "prometheus-operator");
if (!existsSync(pkg)) {
  console.error(`validate-monitoring-objects: ${pkg} missing: npm install --prefix ${prefix} @kubernetes-models/prometheus-operator@6.0.0`);
  process.exit(2);
}
const objects = JSON.parse(readFileSync(0, "utf8"));
let bad = 0;
for (const obj of objects) {
  const kind = obj.kind;
  if (!["PodMonitor", "ServiceMonitor", "PrometheusRule"].includes(kind) || obj.apiVersion !== "monitoring.coreos.com/v1") {
    console.log(`INVALID ${obj.apiVersion}/${kind} ${obj.metadata?.name}: not a monitoring.coreos.com/v1 PodMonitor/ServiceMonitor/PrometheusRule`);
    bad++;
    continue;
  }
  const mod = await import(pathToFileURL(join(pkg, "monitoring.coreos.com", "v1", `${kind}.js`)).href);
  try {
    new mod[kind](obj).validate();
    console.log(`valid ${kind} ${obj.metadata.name}`);
  } catch (e) {
    console.log(`INVALID ${kind} ${obj.metadata?.name}: ${e.message}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
