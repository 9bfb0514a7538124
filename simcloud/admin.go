package simcloud

import (
	"encoding/json"
	"net/http"
	"time"
)

// The /_sim control endpoint, for driving faults from outside the process
// (e.g. against `cinderwarden sim`). It needs an admin token.
//
//	POST /_sim/faults        {"op": "volume.list", "latency": "200ms", "error_rate": 0.1,
//	                          "status": 503, "fail_next": 2, "timeout_rate": 0, "fail_page": 3}
//	POST /_sim/expire-tokens
//	POST /_sim/nova-detach-hang {"on": true}
//	POST /_sim/reset
//	POST /_sim/forget-nova-mapping {"instance_id": "...", "volume_id": "..."}
//	                          (Nova loses its block-device mapping; nothing else
//	                          changes — the start of a zombie disk)
//	GET  /_sim/events         (the event log as a JSON array)

type faultRequest struct {
	Op          Op      `json:"op"`
	Latency     string  `json:"latency"`
	ErrorRate   float64 `json:"error_rate"`
	Status      int     `json:"status"`
	FailNext    int     `json:"fail_next"`
	TimeoutRate float64 `json:"timeout_rate"`
	FailPage    int     `json:"fail_page"`
}

func (s *Sim) adminRoutes(mux *http.ServeMux) {
	admin := func(h func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			rid := s.reqIDs.requestID()
			_, c, ok := s.model.validate(s.clock.Now(), r.Header.Get("X-Auth-Token"))
			if !ok {
				s.writeError(w, svcKeystone, rid, http.StatusUnauthorized, "The request you have made requires authentication.")
				return
			}
			if !c.Admin {
				s.writeError(w, svcKeystone, rid, http.StatusForbidden, "admin role required")
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /_sim/faults", admin(func(w http.ResponseWriter, r *http.Request) {
		var fr faultRequest
		if err := json.NewDecoder(r.Body).Decode(&fr); err != nil || fr.Op == "" {
			http.Error(w, "body must be a JSON fault with an op", http.StatusBadRequest)
			return
		}
		if fr.Latency != "" {
			d, err := time.ParseDuration(fr.Latency)
			if err != nil {
				http.Error(w, "latency: "+err.Error(), http.StatusBadRequest)
				return
			}
			s.faults.SetLatency(fr.Op, d)
		}
		if fr.ErrorRate > 0 {
			s.faults.SetErrorRate(fr.Op, fr.ErrorRate, fr.Status)
		}
		if fr.FailNext > 0 {
			s.faults.FailNext(fr.Op, fr.FailNext, fr.Status)
		}
		if fr.TimeoutRate > 0 {
			s.faults.SetTimeoutRate(fr.Op, fr.TimeoutRate)
		}
		if fr.FailPage > 0 {
			s.faults.FailPage(fr.Op, fr.FailPage, fr.Status)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /_sim/expire-tokens", admin(func(w http.ResponseWriter, r *http.Request) {
		s.faults.ExpireTokens()
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /_sim/nova-detach-hang", admin(func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			On bool `json:"on"`
		}
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			http.Error(w, "body must be {\"on\": bool}", http.StatusBadRequest)
			return
		}
		s.faults.HangNovaDetach(b.On)
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /_sim/reset", admin(func(w http.ResponseWriter, r *http.Request) {
		s.faults.Reset()
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /_sim/forget-nova-mapping", admin(func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			InstanceID string `json:"instance_id"`
			VolumeID   string `json:"volume_id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || b.InstanceID == "" || b.VolumeID == "" {
			http.Error(w, `body must be {"instance_id": "...", "volume_id": "..."}`, http.StatusBadRequest)
			return
		}
		n, err := s.ForgetNovaMapping(b.InstanceID, b.VolumeID)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		s.writeJSON(w, http.StatusOK, map[string]int{"forgotten": n})
	}))
	mux.HandleFunc("GET /_sim/events", admin(func(w http.ResponseWriter, r *http.Request) {
		s.writeJSON(w, http.StatusOK, s.Events())
	}))
}
