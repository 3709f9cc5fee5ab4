package config

import (
	"io"

	"github.com/BurntSushi/toml"
)

// Encode writes c as TOML: the effective configuration, every default
// written out, [defaults] as it was given. Parsing the output yields an equal
// Config (apart from File and the jobs' Line).
func (c *Config) Encode(w io.Writer) error {
	root := map[string]any{}

	acct := map[string]any{"id": c.Account.ID, "url": c.Account.URL, "user": c.Account.User}
	putNonEmpty(acct, "password_file", c.Account.PasswordFile)
	putNonEmpty(acct, "password_env", c.Account.PasswordEnv)
	putNonEmpty(acct, "credential", c.Account.Credential)
	putNonEmpty(acct, "ca_file", c.Account.CAFile)
	root["account"] = acct

	budget := map[string]any{
		"daily_limit": c.Budget.DailyLimit, "reserve": c.Budget.Reserve,
		"rate": c.Budget.Rate, "retention": c.Budget.Retention,
	}
	if !c.Budget.RateMarginAuto {
		budget["rate_margin"] = c.Budget.RateMargin
	}
	root["budget"] = budget
	st := map[string]any{"path": c.Store.Path}
	putNonEmpty(st, "url", c.Store.URL)
	putNonEmpty(st, "password_file", c.Store.PasswordFile)
	putNonEmpty(st, "password_env", c.Store.PasswordEnv)
	putNonEmpty(st, "credential", c.Store.Credential)
	putNonEmpty(st, "instance", c.Store.Instance)
	if c.Store.URL != "" {
		st["lease"] = c.Store.Lease
	}
	root["store"] = st
	root["log"] = map[string]any{"level": c.Log.Level, "format": c.Log.Format}
	if c.HTTP.Listen != "" || c.HTTP.PublicURL != "" {
		h := map[string]any{}
		if c.HTTP.Listen != "" {
			h["listen"] = c.HTTP.Listen
		}
		if c.HTTP.PublicURL != "" {
			h["public_url"] = c.HTTP.PublicURL
		}
		root["http"] = h
	}
	root["evidence"] = map[string]any{"dir": c.Evidence.Dir, "max_run_mb": c.Evidence.MaxRunMB,
		"max_total_mb": c.Evidence.MaxTotalMB, "give_up_after": c.Evidence.GiveUpAfter}

	if len(c.Notify) > 0 {
		list := make([]map[string]any, len(c.Notify))
		for i, n := range c.Notify {
			m := map[string]any{
				"name": n.Name, "kind": n.Kind, "events": n.Events, "min_priority": n.MinPriority,
				"timeout": n.Timeout, "remind": n.Remind, "thresholds": n.Thresholds,
			}
			putNonEmpty(m, "url", n.URL)
			putNonEmpty(m, "command", n.Command)
			putNonEmpty(m, "secret_file", n.SecretFile)
			if len(n.Jobs) > 0 {
				m["jobs"] = n.Jobs
			}
			list[i] = m
		}
		root["notify"] = list
	}

	if len(c.Defaults.Set) > 0 {
		d := c.Defaults.Job
		root["defaults"] = jobMap(&d, c.Defaults.Set)
	}

	if len(c.Jobs) > 0 {
		list := make([]map[string]any, len(c.Jobs))
		for i := range c.Jobs {
			j := &c.Jobs[i]
			var keys []string
			bit := kindBits[j.Kind]
			for _, k := range jobKeys {
				if k.kinds&bit == 0 {
					continue
				}
				switch k.name {
				case "process_id", "process_name":
					if *k.field(j).(*string) == "" {
						continue // one of the two
					}
				case "properties":
					if len(j.Properties) == 0 {
						continue
					}
				case "after", "after_status":
					if j.After == "" {
						continue
					}
				case "schedule":
					if j.After != "" {
						continue // a chain's step has none
					}
				case "filter":
					if len(j.Filters) == 0 {
						continue
					}
				case "extensions":
					if j.Extensions == nil {
						continue
					}
				case "atoms", "listeners", "smoke_process_id", "smoke_atom_id":
					if jobMap(j, []string{k.name})[k.name] == nil || jobMap(j, []string{k.name})[k.name] == "" {
						continue
					}
				}
				keys = append(keys, k.name)
			}
			list[i] = jobMap(j, keys)
		}
		root["job"] = list
	}
	return toml.NewEncoder(w).Encode(root)
}

func putNonEmpty(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// jobMap returns the given keys of j as a TOML table.
func jobMap(j *Job, keys []string) map[string]any {
	m := map[string]any{}
	for _, k := range keys {
		switch v := jobKeyByName[k].field(j).(type) {
		case *string:
			m[k] = *v
		case *Duration:
			m[k] = *v
		case *int:
			m[k] = *v
		case *bool:
			m[k] = *v
		case *map[string]string:
			if len(*v) > 0 {
				m[k] = *v
			}
		case *[]string:
			if len(*v) > 0 {
				m[k] = *v
			}
		case **Extensions:
			if *v != nil {
				m[k] = *v
			}
		case *[]Filter:
			fs := make([]map[string]any, len(*v))
			for i, f := range *v {
				fm := map[string]any{"property": f.Property, "operator": f.Operator}
				if len(f.Arguments) > 0 {
					fm["arguments"] = f.Arguments
				}
				fs[i] = fm
			}
			if len(fs) > 0 {
				m[k] = fs
			}
		}
	}
	return m
}
