package main

import (
	"bufio"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuLimit returns the CPU bandwidth limit, in CPUs, of the control group
// this process runs in (cgroup v2 cpu.max, or v1 cpu.cfs_quota_us over
// cpu.cfs_period_us), the smallest along its path to the hierarchy's root;
// 0 when there is none or it cannot be read. root is "/" but for tests.
func cpuLimit(root string) float64 {
	f, err := os.Open(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0
	}
	defer f.Close()
	limit := 0.0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			limit = lower(limit, walkLimit(filepath.Join(root, "sys/fs/cgroup"), parts[2], readCPUMax))
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c != "cpu" {
				continue
			}
			for _, mount := range []string{"cpu", "cpu,cpuacct", "cpuacct,cpu"} {
				limit = lower(limit, walkLimit(filepath.Join(root, "sys/fs/cgroup", mount), parts[2], readCFSQuota))
			}
		}
	}
	return limit
}

// walkLimit reads the limit in the group at p under the hierarchy mounted at
// mount and in each of its ancestors, and returns the smallest. In a
// container the path may name the group as the host sees it, absent under
// the container's mount; its ancestors then lead to the mount's root, which
// is the container's group.
func walkLimit(mount, p string, read func(dir string) float64) float64 {
	limit := 0.0
	for p = path.Clean("/" + p); ; p = path.Dir(p) {
		limit = lower(limit, read(filepath.Join(mount, filepath.FromSlash(p))))
		if p == "/" {
			return limit
		}
	}
}

// lower returns the smaller of two limits, 0 standing for none.
func lower(a, b float64) float64 {
	if a == 0 || b > 0 && b < a {
		return b
	}
	return a
}

// readCPUMax reads cgroup v2's "QUOTA PERIOD" (QUOTA "max": no limit).
func readCPUMax(dir string) float64 {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	return ratio(f[0], f[1])
}

// readCFSQuota reads cgroup v1's quota and period (a quota of -1: no limit).
func readCFSQuota(dir string) float64 {
	q, err1 := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
	p, err2 := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
	if err1 != nil || err2 != nil {
		return 0
	}
	return ratio(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
}

func ratio(quota, period string) float64 {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0
	}
	return q / p
}
