// chart-render: a small stand-in for `helm template`, for machines without helm.
//
// It renders a chart directory the way Helm 3 does for the features charts commonly use:
// text/template with sprig's functions (less env and expandenv, as in Helm), Helm's include, tpl,
// required, toYaml, fromYaml, toJson, fromJson and lookup (no cluster here, so lookup always
// returns an empty map, as `helm template` does), .Values coalesced from values.yaml, -f files
// and --set, .Release, .Chart, .Capabilities, .Template and .Files, subcharts in charts/ (with
// alias, condition and global values), and the `---\n# Source: <file>` output of helm template.
// Values are read as Helm reads them (numbers from files are float64, integers from --set int64),
// so a template that works here works with helm.
//
// It does not validate values.schema.json (the caller does, with a JSON-schema validator, after
// --show-values), does not sort objects by kind, and does not read packaged (.tgz) subcharts.
//
// Build (Debian bookworm: golang-go, golang-github-masterminds-sprig-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode:$TMP go build -o chart-render ./tools/chart-render
//
// Usage:
//
//	chart-render [--name NAME] [--namespace NS] [-f values.yaml]... [--set k=v]... [--set-string k=v]...
//	             [--api-versions group/version]... [--kube-version v1.31.0] [--is-upgrade]
//	             [--show-values | --notes] CHART_DIR
//
// Exit codes: 0 rendered; 1 a template or values error (message on stderr, as helm words it);
// 2 a usage error.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/ioutil"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v2"
)

// ---------------------------------------------------------------------------------------------
// Command line

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

type options struct {
	name        string
	namespace   string
	valueFiles  stringList
	sets        stringList
	setStrings  stringList
	apiVersions stringList
	kubeVersion string
	isUpgrade   bool
	showValues  bool
	notes       bool
	chartDir    string
}

func usage(msg string) {
	fmt.Fprintf(os.Stderr, "chart-render: %s\n", msg)
	fmt.Fprintln(os.Stderr, "usage: chart-render [--name NAME] [--namespace NS] [-f FILE]... [--set K=V]... [--set-string K=V]... [--api-versions G/V]... [--kube-version V] [--is-upgrade] [--show-values|--notes] CHART_DIR")
	os.Exit(2)
}

func parseArgs(args []string) options {
	o := options{name: "release-name", namespace: "default", kubeVersion: "v1.31.0"}
	next := func(i *int, flag string) string {
		if *i+1 >= len(args) {
			usage(flag + " needs a value")
		}
		*i++
		return args[*i]
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		flag, value, hasValue := a, "", false
		if strings.HasPrefix(a, "--") && strings.Contains(a, "=") {
			idx := strings.Index(a, "=")
			flag, value, hasValue = a[:idx], a[idx+1:], true
		}
		get := func() string {
			if hasValue {
				return value
			}
			return next(&i, flag)
		}
		switch flag {
		case "--name":
			o.name = get()
		case "--namespace", "-n":
			o.namespace = get()
		case "-f", "--values":
			o.valueFiles = append(o.valueFiles, get())
		case "--set":
			o.sets = append(o.sets, get())
		case "--set-string":
			o.setStrings = append(o.setStrings, get())
		case "--api-versions", "-a":
			for _, v := range strings.Split(get(), ",") {
				if v = strings.TrimSpace(v); v != "" {
					o.apiVersions = append(o.apiVersions, v)
				}
			}
		case "--kube-version":
			o.kubeVersion = get()
		case "--is-upgrade":
			o.isUpgrade = true
		case "--show-values":
			o.showValues = true
		case "--notes":
			o.notes = true
		default:
			if strings.HasPrefix(a, "-") {
				usage("unknown flag " + a)
			}
			if o.chartDir != "" {
				usage("one chart directory only")
			}
			o.chartDir = a
		}
	}
	if o.chartDir == "" {
		usage("a chart directory is required")
	}
	return o
}

// ---------------------------------------------------------------------------------------------
// Values, read as Helm reads them (sigs.k8s.io/yaml: YAML -> JSON -> interface{})

// jsonish turns what yaml.v2 decodes into what encoding/json would have decoded: string keys,
// float64 numbers.
func jsonish(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			m[fmt.Sprint(k)] = jsonish(val)
		}
		return m
	case map[string]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			m[k] = jsonish(val)
		}
		return m
	case []interface{}:
		l := make([]interface{}, len(t))
		for i, val := range t {
			l[i] = jsonish(val)
		}
		return l
	case int:
		return float64(t)
	case int64:
		return float64(t)
	case uint64:
		return float64(t)
	default:
		return v
	}
}

func readYAMLMap(data []byte, what string) (map[string]interface{}, error) {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := jsonish(raw).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: not a map", what)
	}
	return m, nil
}

func copyValue(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			m[k] = copyValue(val)
		}
		return m
	case []interface{}:
		l := make([]interface{}, len(t))
		for i, val := range t {
			l[i] = copyValue(val)
		}
		return l
	default:
		return v
	}
}

// mergeInto merges src over dst (later -f files and --set over earlier ones); maps merge, the
// rest replaces.
func mergeInto(dst, src map[string]interface{}) {
	for k, sv := range src {
		if sm, ok := sv.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				mergeInto(dm, sm)
				continue
			}
		}
		dst[k] = copyValue(sv)
	}
}

// coalesce lays user values over a chart's defaults as Helm does: maps merge, other values
// replace, and a user null deletes the default.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := copyValue(defaults).(map[string]interface{})
	for k, uv := range user {
		if uv == nil {
			delete(out, k)
			continue
		}
		if um, ok := uv.(map[string]interface{}); ok {
			if dm, ok := out[k].(map[string]interface{}); ok {
				out[k] = coalesce(um, dm)
				continue
			}
		}
		out[k] = copyValue(uv)
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// --set, after Helm's strvals: a.b=c,d[0]=e,list={x,y}; \ escapes , = . [ ] { }

func splitUnescaped(s string, sep rune) []string {
	var parts []string
	var cur strings.Builder
	depth := 0
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune('\\')
			cur.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped = true
		case r == '{':
			depth++
			cur.WriteRune(r)
		case r == '}':
			depth--
			cur.WriteRune(r)
		case r == sep && depth == 0:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	if escaped {
		cur.WriteRune('\\')
	}
	return append(parts, cur.String())
}

func unescape(s string) string {
	var b strings.Builder
	escaped := false
	for _, r := range s {
		if escaped {
			b.WriteRune(r)
			escaped = false
		} else if r == '\\' {
			escaped = true
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func typedValue(s string, asString bool) interface{} {
	if asString {
		return s
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	case "0":
		return int64(0)
	}
	if len(s) > 0 && s[0] != '0' {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return s
}

type pathPart struct {
	key   string
	index int // -1: a map key
}

var indexRE = regexp.MustCompile(`^(.*?)\[(\d+)\]$`)

func parseKeyPath(key string) ([]pathPart, error) {
	var parts []pathPart
	for _, seg := range splitUnescaped(key, '.') {
		var indexes []int
		for {
			m := indexRE.FindStringSubmatch(seg)
			if m == nil {
				break
			}
			n, _ := strconv.Atoi(m[2])
			indexes = append([]int{n}, indexes...)
			seg = m[1]
		}
		if seg == "" {
			return nil, fmt.Errorf("key %q has an empty segment", key)
		}
		parts = append(parts, pathPart{key: unescape(seg), index: -1})
		for _, n := range indexes {
			parts = append(parts, pathPart{index: n})
		}
	}
	return parts, nil
}

func setPath(container interface{}, parts []pathPart, value interface{}) (interface{}, error) {
	if len(parts) == 0 {
		return value, nil
	}
	p := parts[0]
	if p.index < 0 {
		m, ok := container.(map[string]interface{})
		if !ok || m == nil {
			m = map[string]interface{}{}
		}
		child, err := setPath(m[p.key], parts[1:], value)
		if err != nil {
			return nil, err
		}
		m[p.key] = child
		return m, nil
	}
	l, _ := container.([]interface{})
	if p.index > 65536 {
		return nil, fmt.Errorf("index %d is too large", p.index)
	}
	for len(l) <= p.index {
		l = append(l, nil)
	}
	child, err := setPath(l[p.index], parts[1:], value)
	if err != nil {
		return nil, err
	}
	l[p.index] = child
	return l, nil
}

func applySet(values map[string]interface{}, expr string, asString bool) error {
	for _, assignment := range splitUnescaped(expr, ',') {
		if strings.TrimSpace(assignment) == "" {
			continue
		}
		kv := splitUnescaped(assignment, '=')
		if len(kv) < 2 {
			return fmt.Errorf("--set %q: key %q has no value", expr, assignment)
		}
		key, raw := kv[0], strings.Join(kv[1:], "=")
		parts, err := parseKeyPath(key)
		if err != nil {
			return fmt.Errorf("--set %q: %v", expr, err)
		}
		var value interface{}
		if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") {
			list := []interface{}{}
			inner := raw[1 : len(raw)-1]
			if inner != "" {
				for _, item := range splitUnescaped(inner, ',') {
					list = append(list, typedValue(unescape(item), asString))
				}
			}
			value = list
		} else {
			value = typedValue(unescape(raw), asString)
		}
		if _, err := setPath(values, parts, value); err != nil {
			return fmt.Errorf("--set %q: %v", expr, err)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// Charts

type dependency struct {
	Name       string `yaml:"name"`
	Version    string `yaml:"version"`
	Repository string `yaml:"repository"`
	Alias      string `yaml:"alias"`
	Condition  string `yaml:"condition"`
}

type chartFile struct {
	name string // path below the chart directory, slash-separated
	data []byte
}

type chart struct {
	dir       string
	meta      map[string]interface{} // .Chart: Name, Version, AppVersion, ...
	deps      []dependency
	defaults  map[string]interface{}
	templates []chartFile
	files     []chartFile // everything else, for .Files
	subcharts map[string]*chart
}

// Chart.yaml keys to the field names Helm's chart.Metadata exposes to templates.
var metadataFields = map[string]string{
	"apiVersion": "APIVersion", "name": "Name", "version": "Version", "kubeVersion": "KubeVersion",
	"description": "Description", "type": "Type", "keywords": "Keywords", "home": "Home",
	"sources": "Sources", "maintainers": "Maintainers", "icon": "Icon", "appVersion": "AppVersion",
	"deprecated": "Deprecated", "annotations": "Annotations", "dependencies": "Dependencies",
}

func loadChart(dir string) (*chart, error) {
	raw, err := ioutil.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, fmt.Errorf("%s: no Chart.yaml: %v", dir, err)
	}
	var metaRaw map[string]interface{}
	if err := yaml.Unmarshal(raw, &metaRaw); err != nil {
		return nil, fmt.Errorf("%s/Chart.yaml: %v", dir, err)
	}
	metaRaw = jsonish(metaRaw).(map[string]interface{})
	c := &chart{dir: dir, meta: map[string]interface{}{}, subcharts: map[string]*chart{}}
	for k, v := range metaRaw {
		if field, ok := metadataFields[k]; ok {
			c.meta[field] = v
		}
	}
	for _, field := range metadataFields {
		if _, ok := c.meta[field]; !ok {
			c.meta[field] = ""
		}
	}
	if c.meta["Name"] == "" {
		return nil, fmt.Errorf("%s/Chart.yaml: name is required", dir)
	}
	var depsDoc struct {
		Dependencies []dependency `yaml:"dependencies"`
	}
	if err := yaml.Unmarshal(raw, &depsDoc); err != nil {
		return nil, fmt.Errorf("%s/Chart.yaml: %v", dir, err)
	}
	c.deps = depsDoc.Dependencies

	c.defaults = map[string]interface{}{}
	if data, err := ioutil.ReadFile(filepath.Join(dir, "values.yaml")); err == nil {
		if c.defaults, err = readYAMLMap(data, filepath.Join(dir, "values.yaml")); err != nil {
			return nil, err
		}
	}

	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if info.IsDir() {
			if rel == "charts" {
				return filepath.SkipDir
			}
			return nil
		}
		data, err := ioutil.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			c.templates = append(c.templates, chartFile{rel, data})
		} else {
			c.files = append(c.files, chartFile{rel, data})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(c.templates, func(i, j int) bool { return c.templates[i].name < c.templates[j].name })

	entries, _ := ioutil.ReadDir(filepath.Join(dir, "charts"))
	for _, e := range entries {
		p := filepath.Join(dir, "charts", e.Name())
		if !e.IsDir() {
			if info, err := os.Stat(p); err == nil && info.IsDir() {
				e = info // a symlink to a chart directory
			} else {
				if strings.HasSuffix(e.Name(), ".tgz") {
					return nil, fmt.Errorf("%s: packaged subcharts are not supported here; unpack it", p)
				}
				continue
			}
		}
		sub, err := loadChart(p)
		if err != nil {
			return nil, err
		}
		c.subcharts[sub.meta["Name"].(string)] = sub
	}
	for _, d := range c.deps {
		if _, ok := c.subcharts[d.Name]; !ok {
			return nil, fmt.Errorf("found in Chart.yaml, but missing in charts/ directory: %s", d.Name)
		}
	}
	return c, nil
}

func lookupPath(values map[string]interface{}, dotted string) (interface{}, bool) {
	var cur interface{} = values
	for _, k := range strings.Split(dotted, ".") {
		m, ok := cur.(map[string]interface{})
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// renderUnit is one chart of the tree, with the values and metadata its templates see.
type renderUnit struct {
	c      *chart
	prefix string // template name prefix: "parent" or "parent/charts/sub"
	values map[string]interface{}
	meta   map[string]interface{}
}

// resolve coalesces a chart's values with its defaults and walks its enabled subcharts, as Helm
// does: the parent's values under the dependency's name (or alias) are laid over the subchart's
// defaults, `global` flows down, and the parent then sees the coalesced subchart values there.
func resolve(c *chart, user map[string]interface{}, prefix string, units *[]renderUnit) map[string]interface{} {
	values := coalesce(user, c.defaults)
	meta := copyValue(c.meta).(map[string]interface{})
	if prefix == "" {
		prefix = meta["Name"].(string)
	}
	for _, d := range c.deps {
		key := d.Name
		if d.Alias != "" {
			key = d.Alias
		}
		enabled := true
		if d.Condition != "" {
			for _, cond := range strings.Split(d.Condition, ",") {
				if v, ok := lookupPath(values, strings.TrimSpace(cond)); ok {
					if b, isBool := v.(bool); isBool {
						enabled = b
						break
					}
				}
			}
		}
		if !enabled {
			continue
		}
		sub := c.subcharts[d.Name]
		subUser, _ := values[key].(map[string]interface{})
		if subUser == nil {
			subUser = map[string]interface{}{}
		}
		subUser = copyValue(subUser).(map[string]interface{})
		if g, ok := values["global"].(map[string]interface{}); ok {
			sg, _ := subUser["global"].(map[string]interface{})
			if sg == nil {
				sg = map[string]interface{}{}
			}
			subUser["global"] = coalesce(sg, g)
		}
		subPrefix := prefix + "/charts/" + key
		// A subchart's own values.yaml is its defaults; its subcharts resolve recursively.
		subValues := resolveSub(sub, subUser, subPrefix, key, units)
		values[key] = subValues
	}
	*units = append(*units, renderUnit{c: c, prefix: prefix, values: values, meta: meta})
	return values
}

func resolveSub(c *chart, user map[string]interface{}, prefix, alias string, units *[]renderUnit) map[string]interface{} {
	values := resolve(c, user, prefix, units)
	// Helm renames an aliased chart: its templates see .Chart.Name == alias.
	last := &(*units)[len(*units)-1]
	last.meta["Name"] = alias
	return values
}

// ---------------------------------------------------------------------------------------------
// What templates see besides .Values

type apiVersions []string

// Has reports whether the cluster serves a group/version, or a group/version/Kind.
func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type kubeVersion struct {
	Version, Major, Minor, GitVersion string
}

func (k kubeVersion) String() string { return k.Version }

type capabilities struct {
	APIVersions apiVersions
	KubeVersion kubeVersion
	HelmVersion map[string]interface{}
}

// The built-in groups a current cluster serves (Helm's DefaultVersionSet, abridged).
var defaultAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "autoscaling/v1", "autoscaling/v2", "policy/v1",
	"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "admissionregistration.k8s.io/v1",
	"apiextensions.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1",
	"scheduling.k8s.io/v1", "storage.k8s.io/v1", "certificates.k8s.io/v1", "events.k8s.io/v1",
}

type files struct{ list []chartFile }

func (f files) GetBytes(name string) []byte {
	for _, x := range f.list {
		if x.name == name {
			return x.data
		}
	}
	return nil
}
func (f files) Get(name string) string { return string(f.GetBytes(name)) }
func (f files) Lines(name string) []string {
	s := f.Get(name)
	if s == "" {
		return []string{}
	}
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}
func (f files) Glob(pattern string) files {
	var out files
	for _, x := range f.list {
		if ok, _ := path.Match(pattern, x.name); ok {
			out.list = append(out.list, x)
		}
	}
	return out
}
func (f files) AsConfig() string {
	m := map[string]string{}
	for _, x := range f.list {
		m[path.Base(x.name)] = string(x.data)
	}
	s, _ := toYAML(m)
	return s
}

// ---------------------------------------------------------------------------------------------
// Helm's functions

// toYAML is sigs.k8s.io/yaml.Marshal: JSON first (sorted keys, JSON's view of types), then YAML.
func toYAML(v interface{}) (string, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	var ms interface{}
	if err := yaml.Unmarshal(j, &ms); err != nil {
		return "", err
	}
	var slice yaml.MapSlice
	if err := yaml.Unmarshal(j, &slice); err == nil && len(j) > 0 && j[0] == '{' {
		ms = slice
	}
	out, err := yaml.Marshal(ms)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(out), "\n"), nil
}

func fromYAML(s string) map[string]interface{} {
	m, err := readYAMLMap([]byte(s), "fromYaml")
	if err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	var raw interface{}
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return []interface{}{err.Error()}
	}
	l, ok := jsonish(raw).([]interface{})
	if !ok {
		return []interface{}{"fromYamlArray: not a list"}
	}
	return l
}

func toJSON(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(j)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(s string) []interface{} {
	var l []interface{}
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return []interface{}{err.Error()}
	}
	return l
}

func required(warn string, val interface{}) (interface{}, error) {
	if val == nil {
		return val, errors.New(warn)
	}
	if s, ok := val.(string); ok && s == "" {
		return val, errors.New(warn)
	}
	return val, nil
}

const maxIncludeDepth = 1000

type engine struct {
	tmpl  *template.Template
	depth int
}

func (e *engine) funcMap() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = func(v interface{}) string { s, _ := toYAML(v); return s }
	f["fromYaml"] = fromYAML
	f["fromYamlArray"] = fromYAMLArray
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["fromJsonArray"] = fromJSONArray
	f["required"] = required
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		if e.depth >= maxIncludeDepth {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		e.depth++
		defer func() { e.depth-- }()
		var buf bytes.Buffer
		if err := e.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := e.tmpl.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", text, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("error calling tpl: %v", err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	return f
}

// helmError words a template error as helm does: `execution error at (file:line:col): message`.
var execErrorRE = regexp.MustCompile(`(?s)^template: (.*?): executing "(?:.*?)" at <(?:.*?)>: error calling (?:fail|required): (.*)$`)

func helmError(err error) error {
	msg := err.Error()
	// Errors from inside include come wrapped: keep the innermost location and the message.
	if m := execErrorRE.FindStringSubmatch(lastExecError(msg)); m != nil {
		return fmt.Errorf("execution error at (%s): %s", m[1], m[2])
	}
	return err
}

func lastExecError(msg string) string {
	idx := strings.LastIndex(msg, "template: ")
	if idx < 0 {
		return msg
	}
	return msg[idx:]
}

// ---------------------------------------------------------------------------------------------
// Rendering

type rendered struct {
	name    string
	content string
}

func run(o options) error {
	root, err := loadChart(o.chartDir)
	if err != nil {
		return err
	}
	user := map[string]interface{}{}
	for _, f := range o.valueFiles {
		data, err := ioutil.ReadFile(f)
		if err != nil {
			return err
		}
		m, err := readYAMLMap(data, f)
		if err != nil {
			return err
		}
		mergeInto(user, m)
	}
	for _, s := range o.sets {
		if err := applySet(user, s, false); err != nil {
			return err
		}
	}
	for _, s := range o.setStrings {
		if err := applySet(user, s, true); err != nil {
			return err
		}
	}

	var units []renderUnit
	values := resolve(root, user, "", &units)
	if o.showValues {
		out, err := json.MarshalIndent(values, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(out))
		return nil
	}

	kv := strings.TrimPrefix(o.kubeVersion, "v")
	parts := strings.SplitN(kv, ".", 3)
	if len(parts) < 2 {
		return fmt.Errorf("--kube-version %q: want vMAJOR.MINOR.PATCH", o.kubeVersion)
	}
	caps := capabilities{
		APIVersions: append(append(apiVersions{}, defaultAPIVersions...), o.apiVersions...),
		KubeVersion: kubeVersion{Version: "v" + kv, Major: parts[0], Minor: parts[1], GitVersion: "v" + kv},
		HelmVersion: map[string]interface{}{"Version": "v3.0.0-chart-render"},
	}
	release := map[string]interface{}{
		"Name": o.name, "Namespace": o.namespace, "Service": "Helm", "Revision": 1,
		"IsUpgrade": o.isUpgrade, "IsInstall": !o.isUpgrade,
	}

	e := &engine{}
	e.tmpl = template.New("gotpl").Option("missingkey=zero")
	e.tmpl.Funcs(e.funcMap())
	// Subcharts were appended before their parents: parse them first, so a parent's define of
	// the same name wins, as in Helm.
	for _, u := range units {
		for _, f := range u.c.templates {
			name := u.prefix + "/" + f.name
			if _, err := e.tmpl.New(name).Parse(string(f.data)); err != nil {
				return fmt.Errorf("parse error at (%s): %v", name, err)
			}
		}
	}

	// Execute in Helm's order (engine.sortTemplates): deepest paths first, then reverse
	// lexicographic. The first failing template stops the render, so which error a user sees
	// depends on it; the output is then written in plain name order.
	type job struct {
		unit   renderUnit
		file   chartFile
		name   string
		isRoot bool
	}
	var jobs []job
	for i, u := range units {
		for _, f := range u.c.templates {
			jobs = append(jobs, job{u, f, u.prefix + "/" + f.name, i == len(units)-1})
		}
	}
	sort.SliceStable(jobs, func(i, j int) bool {
		a, b := jobs[i].name, jobs[j].name
		ca, cb := strings.Count(a, "/"), strings.Count(b, "/")
		if ca != cb {
			return ca > cb
		}
		return a > b
	})

	var out []rendered
	var notes string
	for _, jb := range jobs {
		u, f, name := jb.unit, jb.file, jb.name
		base := path.Base(f.name)
		isNotes := f.name == "templates/NOTES.txt"
		if strings.HasPrefix(base, "_") || (isNotes && (!jb.isRoot || !o.notes)) {
			continue
		}
		ctx := map[string]interface{}{
			"Values":       u.values,
			"Release":      release,
			"Chart":        u.meta,
			"Capabilities": caps,
			"Files":        files{u.c.files},
			"Template":     map[string]interface{}{"Name": name, "BasePath": u.prefix + "/templates"},
		}
		var buf bytes.Buffer
		if err := e.tmpl.ExecuteTemplate(&buf, name, ctx); err != nil {
			return helmError(err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if isNotes {
			notes = text
			continue
		}
		out = append(out, rendered{name, text})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	if o.notes {
		fmt.Print(notes)
		return nil
	}
	docSep := regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)
	var w bytes.Buffer
	for _, r := range out {
		for _, doc := range docSep.Split(r.content, -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			fmt.Fprintf(&w, "---\n# Source: %s\n%s\n", r.name, strings.Trim(doc, "\n"))
		}
	}
	_, err = os.Stdout.Write(w.Bytes())
	return err
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteString("\n")
		}
	}
	return b.String()
}

func main() {
	o := parseArgs(os.Args[1:])
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
}
