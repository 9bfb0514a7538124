package simcloud

import (
	"net/http"
	"strings"
)

// The metadata service: each instance gets its own base URL
// (Sim.MetadataURL), standing in for http://169.254.169.254 inside that
// guest. No token is needed, as on a real cloud.

func (s *Sim) metaInstance(w http.ResponseWriter, r *http.Request) (server, bool) {
	sv, err := s.model.getServer(s.clock.Now(), caller{Admin: true}, r.PathValue("instance"))
	if err != nil {
		http.Error(w, "404 Not Found", http.StatusNotFound)
		return server{}, false
	}
	v := s.faults.decide(OpMetadata)
	if err := sleep(r.Context(), s.clock, v.latency); err != nil {
		return server{}, false
	}
	if v.hang {
		<-r.Context().Done()
		return server{}, false
	}
	if v.status != 0 {
		http.Error(w, http.StatusText(v.status), v.status)
		return server{}, false
	}
	return sv, true
}

func (s *Sim) metaData(w http.ResponseWriter, r *http.Request) {
	sv, ok := s.metaInstance(w, r)
	if !ok {
		return
	}
	host := strings.ToLower(strings.ReplaceAll(sv.Name, " ", "-"))
	s.writeJSON(w, http.StatusOK, map[string]any{
		"uuid":              sv.ID,
		"name":              sv.Name,
		"hostname":          host + ".novalocal",
		"availability_zone": sv.AZ,
		"project_id":        sv.ProjectID,
		"launch_index":      0,
		"meta":              map[string]any{},
		"devices":           []any{},
		"dedicated_cpus":    []any{},
		"random_seed":       "",
	})
}

func (s *Sim) metaVersions(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.metaInstance(w, r); !ok {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	_, _ = w.Write([]byte("2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\n2016-06-30\n2016-10-06\n2017-02-22\n2018-08-27\n2020-10-14\nlatest"))
}
