//! `deploy/kubernetes/` read as Kubernetes' own types (`k8s-openapi`): every document parses, and the pieces
//! agree with each other and with the agent (port, labels, service account, the CPU request that matches the
//! agent's budget, hostPID for reading other containers' mount namespaces).

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use serde::Deserialize;

use super::deploy;

/// The Prometheus Operator's ServiceMonitor (a CRD, so not in k8s-openapi): the fields the agent relies on.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: MonitorSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MonitorSpec {
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    port: String,
    path: String,
    relabelings: Vec<std::collections::BTreeMap<String, String>>,
}

fn documents<T: serde::de::DeserializeOwned>(file: &str) -> Vec<T> {
    let text = std::fs::read_to_string(deploy().join("kubernetes").join(file)).unwrap();
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn one<T: serde::de::DeserializeOwned>(file: &str) -> T {
    documents::<T>(file).pop().unwrap()
}

#[test]
fn the_kubernetes_manifests_parse_as_kubernetes_types_and_agree_with_each_other() {
    let namespace: Namespace = one("namespace.yaml");
    let account: ServiceAccount = one("rbac.yaml");
    let daemonset: DaemonSet = one("daemonset.yaml");
    let text = std::fs::read_to_string(deploy().join("kubernetes/servicemonitor.yaml")).unwrap();
    let (service_text, monitor_text) = text.split_once("\n---\n").unwrap();
    let service: Service = serde_saphyr::from_str(service_text).unwrap();
    let monitor: ServiceMonitor = serde_saphyr::from_str(monitor_text).unwrap();

    let ns = namespace.metadata.name.clone().unwrap();
    let labels = namespace.metadata.labels.clone().unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "privileged");
    for meta in [
        &account.metadata,
        &daemonset.metadata,
        &service.metadata,
        &monitor.metadata,
    ] {
        assert_eq!(meta.namespace.as_deref(), Some(ns.as_str()));
    }
    assert_eq!(account.automount_service_account_token, Some(false));

    let spec = daemonset.spec.unwrap();
    let pod = spec.template.spec.unwrap();
    let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(spec.selector.match_labels.as_ref(), Some(&pod_labels));
    assert_eq!(
        pod.host_pid,
        Some(true),
        "the agent reads every container's /proc/PID/mountinfo"
    );
    assert_eq!(pod.service_account_name, account.metadata.name);
    let agent = &pod.containers[0];
    let args = agent.args.clone().unwrap();
    assert_eq!(args[0], "agent");
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")))
            .unwrap_or_else(|| panic!("--{name} in {args:?}"))
            .to_owned()
    };
    let budget: f64 = flag("cpu-budget").parse().unwrap();
    let resources = agent.resources.clone().unwrap();
    let request = &resources.requests.unwrap()["cpu"].0;
    let millicores: f64 = request.strip_suffix('m').unwrap().parse().unwrap();
    assert_eq!(millicores, budget * 10.0, "the CPU request is the hashing budget");
    let limit: f64 = resources.limits.unwrap()["cpu"]
        .0
        .strip_suffix('m')
        .unwrap()
        .parse()
        .unwrap();
    assert!(limit > millicores, "the limit leaves room above the hashing budget");
    let port = &agent.ports.as_ref().unwrap()[0];
    assert_eq!(flag("listen"), format!("0.0.0.0:{}", port.container_port));
    let mounted = agent.volume_mounts.as_ref().unwrap();
    assert!(
        mounted.iter().any(|v| v.mount_path == flag("store")),
        "the store is mounted where --store says"
    );

    let service_spec = service.spec.unwrap();
    assert_eq!(service_spec.selector.as_ref(), Some(&pod_labels));
    let service_port = &service_spec.ports.unwrap()[0];
    assert_eq!(service_port.name.as_deref(), port.name.as_deref());

    assert_eq!(
        (monitor.api_version.as_str(), monitor.kind.as_str()),
        ("monitoring.coreos.com/v1", "ServiceMonitor")
    );
    assert_eq!(
        monitor.spec.selector.match_labels.as_ref(),
        service.metadata.labels.as_ref()
    );
    let endpoint = &monitor.spec.endpoints[0];
    assert_eq!(Some(endpoint.port.as_str()), service_port.name.as_deref());
    assert_eq!(endpoint.path, "/metrics");
    let rules = std::fs::read_to_string(deploy().join("prometheus/veritylab-rules.yml")).unwrap();
    let job = &endpoint.relabelings[0]["replacement"];
    assert!(
        rules.contains(&format!("up{{job=\"{job}\"}}")),
        "the rules' job name is the monitor's"
    );
}
