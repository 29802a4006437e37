// Package deployments holds what an operator needs to run hiegw: a
// container image, a compose file with PostgreSQL and Kafka, Kubernetes
// manifests, a systemd unit and a documented configuration file. It has no
// code; its tests check those files against hiegw's configuration and
// defaults.
package deployments
