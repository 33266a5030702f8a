{
	"patcher": {
		"fileversion": 1,
		"appversion": {
			"major": 8,
			"minor": 5,
			"revision": 5,
			"architecture": "x64",
			"modernui": 1
		},
		"classnamespace": "box",
		"rect": [
			40.0,
			60.0,
			1240.0,
			1100.0
		],
		"bglocked": 0,
		"openinpresentation": 0,
		"default_fontsize": 12.0,
		"default_fontface": 0,
		"default_fontname": "Arial",
		"gridonopen": 1,
		"gridsize": [
			15.0,
			15.0
		],
		"gridsnaponopen": 1,
		"objectsnaponopen": 1,
		"statusbarvisible": 2,
		"toolbarvisible": 1,
		"lefttoolbarpinned": 0,
		"toptoolbarpinned": 0,
		"righttoolbarpinned": 0,
		"bottomtoolbarpinned": 0,
		"toolbars_unpinned_last_save": 0,
		"tallnewobj": 0,
		"boxanimatetime": 200,
		"enablehscroll": 1,
		"enablevscroll": 1,
		"devicewidth": 0.0,
		"description": "Barcelona control surface: transport, tempo, chord plan, per-agent mix, beat display",
		"digest": "",
		"tags": "",
		"style": "",
		"subpatcher_template": "",
		"assistshowspatchername": 0,
		"boxes": [
			{
				"box": {
					"id": "obj-1",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						20.0,
						10.0,
						620.0,
						24.0
					],
					"text": "Barcelona · control surface for the ensemble \"demo\" (ensembles/default.yaml)",
					"fontsize": 16.0,
					"fontface": 1
				}
			},
			{
				"box": {
					"id": "obj-2",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						20.0,
						36.0,
						760.0,
						34.0
					],
					"text": "Everything below goes to [s barcelona.out] -> [udpsend] on the conductor's control port. Beat ticks come back on 57301, the control.reply_port of ensembles/default.yaml (keep it in yours). See integrations/README.md.",
					"linecount": 2
				}
			},
			{
				"box": {
					"id": "obj-3",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						20.0,
						80.0,
						200.0,
						20.0
					],
					"text": "TRANSPORT",
					"fontface": 1
				}
			},
			{
				"box": {
					"id": "obj-4",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						20.0,
						104.0,
						260.0,
						20.0
					],
					"text": "tempo, BPM (applies at the next bar line)"
				}
			},
			{
				"box": {
					"id": "obj-5",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						20.0,
						130.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": 40,
					"maximum": 240
				}
			},
			{
				"box": {
					"id": "obj-6",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						20.0,
						162.0,
						217.0,
						22.0
					],
					"text": "prepend /barcelona/demo/tempo"
				}
			},
			{
				"box": {
					"id": "obj-7",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						300.0,
						104.0,
						130.0,
						22.0
					],
					"text": "/barcelona/demo/play"
				}
			},
			{
				"box": {
					"id": "obj-8",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						440.0,
						104.0,
						130.0,
						22.0
					],
					"text": "/barcelona/demo/stop"
				}
			},
			{
				"box": {
					"id": "obj-119",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						300.0,
						136.0,
						190.0,
						22.0
					],
					"text": "/barcelona/demo/chords follow"
				}
			},
			{
				"box": {
					"id": "obj-120",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						300.0,
						166.0,
						180.0,
						22.0
					],
					"text": "/barcelona/demo/chords plan"
				}
			},
			{
				"box": {
					"id": "obj-9",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						300.0,
						200.0,
						110.0,
						22.0
					],
					"text": "s barcelona.out"
				}
			},
			{
				"box": {
					"id": "obj-10",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						"bang"
					],
					"patching_rect": [
						600.0,
						104.0,
						70.0,
						22.0
					],
					"text": "loadbang"
				}
			},
			{
				"box": {
					"id": "obj-11",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						600.0,
						136.0,
						150.0,
						22.0
					],
					"text": "/barcelona/demo/stop 0"
				}
			},
			{
				"box": {
					"id": "obj-12",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						600.0,
						162.0,
						280.0,
						34.0
					],
					"text": "hello: a no-op (stop 0) that makes the conductor send beat ticks here; click it after a conductor restart",
					"linecount": 2
				}
			},
			{
				"box": {
					"id": "obj-13",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						20.0,
						270.0,
						400.0,
						20.0
					],
					"text": "CHORD PLAN (bars split by |; type, then Return)",
					"fontface": 1
				}
			},
			{
				"box": {
					"id": "obj-14",
					"maxclass": "textedit",
					"numinlets": 1,
					"numoutlets": 4,
					"outlettype": [
						"",
						"int",
						"",
						""
					],
					"patching_rect": [
						20.0,
						294.0,
						420.0,
						24.0
					],
					"keymode": 1,
					"lines": 1,
					"parameter_enable": 0
				}
			},
			{
				"box": {
					"id": "obj-15",
					"maxclass": "newobj",
					"numinlets": 2,
					"numoutlets": 2,
					"outlettype": [
						"",
						""
					],
					"patching_rect": [
						20.0,
						324.0,
						70.0,
						22.0
					],
					"text": "route text"
				}
			},
			{
				"box": {
					"id": "obj-16",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						20.0,
						440.0,
						210.0,
						22.0
					],
					"text": "prepend /barcelona/demo/plan"
				}
			},
			{
				"box": {
					"id": "obj-17",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						110.0,
						356.0,
						265.0,
						22.0
					],
					"text": "C | G7 | C | G7 | C | G7 | C | G7 C"
				}
			},
			{
				"box": {
					"id": "obj-18",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						110.0,
						382.0,
						209.0,
						22.0
					],
					"text": "Dm7 G7 | Cmaj7 | Cmaj7 | A7"
				}
			},
			{
				"box": {
					"id": "obj-19",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						110.0,
						408.0,
						118.0,
						22.0
					],
					"text": "Am | F | C | G"
				}
			},
			{
				"box": {
					"id": "obj-20",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						20.0,
						472.0,
						110.0,
						22.0
					],
					"text": "s barcelona.out"
				}
			},
			{
				"box": {
					"id": "obj-21",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						480.0,
						270.0,
						400.0,
						20.0
					],
					"text": "EDIT ONE BAR (bar number from 1, then its chords, Return)",
					"fontface": 1
				}
			},
			{
				"box": {
					"id": "obj-22",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						480.0,
						294.0,
						50.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": 1,
					"maximum": 1024
				}
			},
			{
				"box": {
					"id": "obj-23",
					"maxclass": "textedit",
					"numinlets": 1,
					"numoutlets": 4,
					"outlettype": [
						"",
						"int",
						"",
						""
					],
					"patching_rect": [
						540.0,
						294.0,
						240.0,
						24.0
					],
					"keymode": 1,
					"lines": 1,
					"parameter_enable": 0
				}
			},
			{
				"box": {
					"id": "obj-24",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						480.0,
						324.0,
						80.0,
						22.0
					],
					"text": "prepend set"
				}
			},
			{
				"box": {
					"id": "obj-25",
					"maxclass": "newobj",
					"numinlets": 2,
					"numoutlets": 2,
					"outlettype": [
						"",
						""
					],
					"patching_rect": [
						580.0,
						324.0,
						70.0,
						22.0
					],
					"text": "route text"
				}
			},
			{
				"box": {
					"id": "obj-26",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						580.0,
						356.0,
						70.0,
						22.0
					],
					"text": "prepend 1"
				}
			},
			{
				"box": {
					"id": "obj-27",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						680.0,
						356.0,
						60.0,
						22.0
					],
					"text": "1 F G7"
				}
			},
			{
				"box": {
					"id": "obj-28",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						580.0,
						390.0,
						203.0,
						22.0
					],
					"text": "prepend /barcelona/demo/bar"
				}
			},
			{
				"box": {
					"id": "obj-29",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						580.0,
						422.0,
						110.0,
						22.0
					],
					"text": "s barcelona.out"
				}
			},
			{
				"box": {
					"id": "obj-30",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						660.0,
						318.0,
						200.0,
						34.0
					],
					"text": "the bar number box sets the [prepend 1] below it",
					"linecount": 2
				}
			},
			{
				"box": {
					"id": "obj-31",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						20.0,
						516.0,
						520.0,
						20.0
					],
					"text": "AGENTS (toggles: 1 = on; number boxes are clamped inside the protocol's ranges)",
					"fontface": 1
				}
			},
			{
				"box": {
					"id": "obj-32",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						20.0,
						544.0,
						200.0,
						20.0
					],
					"text": "bass",
					"fontface": 1
				}
			},
			{
				"box": {
					"id": "obj-33",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						40.0,
						882.0,
						110.0,
						22.0
					],
					"text": "s barcelona.out"
				}
			},
			{
				"box": {
					"id": "obj-34",
					"maxclass": "toggle",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						"int"
					],
					"patching_rect": [
						20.0,
						570.0,
						24.0,
						24.0
					],
					"parameter_enable": 0
				}
			},
			{
				"box": {
					"id": "obj-35",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						84.0,
						570.0,
						100.0,
						20.0
					],
					"text": "mute"
				}
			},
			{
				"box": {
					"id": "obj-36",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						40.0,
						596.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/bass/mute",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-37",
					"maxclass": "toggle",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						"int"
					],
					"patching_rect": [
						20.0,
						622.0,
						24.0,
						24.0
					],
					"parameter_enable": 0
				}
			},
			{
				"box": {
					"id": "obj-38",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						84.0,
						622.0,
						100.0,
						20.0
					],
					"text": "solo"
				}
			},
			{
				"box": {
					"id": "obj-39",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						40.0,
						648.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/bass/solo",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-40",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						20.0,
						674.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": 0.01,
					"maximum": 5.0
				}
			},
			{
				"box": {
					"id": "obj-41",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						84.0,
						674.0,
						100.0,
						20.0
					],
					"text": "temperature"
				}
			},
			{
				"box": {
					"id": "obj-42",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						40.0,
						700.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/bass/temperature",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-43",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						20.0,
						726.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": 0.0,
					"maximum": 4.0
				}
			},
			{
				"box": {
					"id": "obj-44",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						84.0,
						726.0,
						100.0,
						20.0
					],
					"text": "density"
				}
			},
			{
				"box": {
					"id": "obj-45",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						40.0,
						752.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/bass/density",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-46",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						20.0,
						778.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": 0.01,
					"maximum": 1.0
				}
			},
			{
				"box": {
					"id": "obj-47",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						84.0,
						778.0,
						100.0,
						20.0
					],
					"text": "top_p"
				}
			},
			{
				"box": {
					"id": "obj-48",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						40.0,
						804.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/bass/top_p",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-49",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						20.0,
						830.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": 0,
					"maximum": 4096
				}
			},
			{
				"box": {
					"id": "obj-50",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						84.0,
						830.0,
						100.0,
						20.0
					],
					"text": "top_k"
				}
			},
			{
				"box": {
					"id": "obj-51",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						40.0,
						856.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/bass/top_k",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-52",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						320.0,
						544.0,
						200.0,
						20.0
					],
					"text": "piano",
					"fontface": 1
				}
			},
			{
				"box": {
					"id": "obj-53",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						340.0,
						882.0,
						110.0,
						22.0
					],
					"text": "s barcelona.out"
				}
			},
			{
				"box": {
					"id": "obj-54",
					"maxclass": "toggle",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						"int"
					],
					"patching_rect": [
						320.0,
						570.0,
						24.0,
						24.0
					],
					"parameter_enable": 0
				}
			},
			{
				"box": {
					"id": "obj-55",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						384.0,
						570.0,
						100.0,
						20.0
					],
					"text": "mute"
				}
			},
			{
				"box": {
					"id": "obj-56",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						340.0,
						596.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/piano/mute",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-57",
					"maxclass": "toggle",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						"int"
					],
					"patching_rect": [
						320.0,
						622.0,
						24.0,
						24.0
					],
					"parameter_enable": 0
				}
			},
			{
				"box": {
					"id": "obj-58",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						384.0,
						622.0,
						100.0,
						20.0
					],
					"text": "solo"
				}
			},
			{
				"box": {
					"id": "obj-59",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						340.0,
						648.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/piano/solo",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-60",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						320.0,
						674.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": 0.01,
					"maximum": 5.0
				}
			},
			{
				"box": {
					"id": "obj-61",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						384.0,
						674.0,
						100.0,
						20.0
					],
					"text": "temperature"
				}
			},
			{
				"box": {
					"id": "obj-62",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						340.0,
						700.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/piano/temperature",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-63",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						320.0,
						726.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": 0.0,
					"maximum": 4.0
				}
			},
			{
				"box": {
					"id": "obj-64",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						384.0,
						726.0,
						100.0,
						20.0
					],
					"text": "density"
				}
			},
			{
				"box": {
					"id": "obj-65",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						340.0,
						752.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/piano/density",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-66",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						320.0,
						778.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": 0.01,
					"maximum": 1.0
				}
			},
			{
				"box": {
					"id": "obj-67",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						384.0,
						778.0,
						100.0,
						20.0
					],
					"text": "top_p"
				}
			},
			{
				"box": {
					"id": "obj-68",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						340.0,
						804.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/piano/top_p",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-69",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						320.0,
						830.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": 0,
					"maximum": 4096
				}
			},
			{
				"box": {
					"id": "obj-70",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						384.0,
						830.0,
						100.0,
						20.0
					],
					"text": "top_k"
				}
			},
			{
				"box": {
					"id": "obj-71",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						340.0,
						856.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/piano/top_k",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-72",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						620.0,
						544.0,
						200.0,
						20.0
					],
					"text": "drums",
					"fontface": 1
				}
			},
			{
				"box": {
					"id": "obj-73",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						640.0,
						882.0,
						110.0,
						22.0
					],
					"text": "s barcelona.out"
				}
			},
			{
				"box": {
					"id": "obj-74",
					"maxclass": "toggle",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						"int"
					],
					"patching_rect": [
						620.0,
						570.0,
						24.0,
						24.0
					],
					"parameter_enable": 0
				}
			},
			{
				"box": {
					"id": "obj-75",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						684.0,
						570.0,
						100.0,
						20.0
					],
					"text": "mute"
				}
			},
			{
				"box": {
					"id": "obj-76",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						640.0,
						596.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/drums/mute",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-77",
					"maxclass": "toggle",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						"int"
					],
					"patching_rect": [
						620.0,
						622.0,
						24.0,
						24.0
					],
					"parameter_enable": 0
				}
			},
			{
				"box": {
					"id": "obj-78",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						684.0,
						622.0,
						100.0,
						20.0
					],
					"text": "solo"
				}
			},
			{
				"box": {
					"id": "obj-79",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						640.0,
						648.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/drums/solo",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-80",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						620.0,
						674.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": 0.01,
					"maximum": 5.0
				}
			},
			{
				"box": {
					"id": "obj-81",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						684.0,
						674.0,
						100.0,
						20.0
					],
					"text": "temperature"
				}
			},
			{
				"box": {
					"id": "obj-82",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						640.0,
						700.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/drums/temperature",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-83",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						620.0,
						726.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": 0.0,
					"maximum": 4.0
				}
			},
			{
				"box": {
					"id": "obj-84",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						684.0,
						726.0,
						100.0,
						20.0
					],
					"text": "density"
				}
			},
			{
				"box": {
					"id": "obj-85",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						640.0,
						752.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/drums/density",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-86",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						620.0,
						778.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": 0.01,
					"maximum": 1.0
				}
			},
			{
				"box": {
					"id": "obj-87",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						684.0,
						778.0,
						100.0,
						20.0
					],
					"text": "top_p"
				}
			},
			{
				"box": {
					"id": "obj-88",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						640.0,
						804.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/drums/top_p",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-89",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						620.0,
						830.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": 0,
					"maximum": 4096
				}
			},
			{
				"box": {
					"id": "obj-90",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						684.0,
						830.0,
						100.0,
						20.0
					],
					"text": "top_k"
				}
			},
			{
				"box": {
					"id": "obj-91",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						640.0,
						856.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/drums/top_k",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-92",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						920.0,
						544.0,
						200.0,
						20.0
					],
					"text": "all (agent/*)",
					"fontface": 1
				}
			},
			{
				"box": {
					"id": "obj-93",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						940.0,
						726.0,
						110.0,
						22.0
					],
					"text": "s barcelona.out"
				}
			},
			{
				"box": {
					"id": "obj-94",
					"maxclass": "toggle",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						"int"
					],
					"patching_rect": [
						920.0,
						570.0,
						24.0,
						24.0
					],
					"parameter_enable": 0
				}
			},
			{
				"box": {
					"id": "obj-95",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						984.0,
						570.0,
						100.0,
						20.0
					],
					"text": "mute"
				}
			},
			{
				"box": {
					"id": "obj-96",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						940.0,
						596.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/*/mute",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-97",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						920.0,
						622.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": 0.01,
					"maximum": 5.0
				}
			},
			{
				"box": {
					"id": "obj-98",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						984.0,
						622.0,
						100.0,
						20.0
					],
					"text": "temperature"
				}
			},
			{
				"box": {
					"id": "obj-99",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						940.0,
						648.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/*/temperature",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-100",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						920.0,
						674.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": 0.0,
					"maximum": 4.0
				}
			},
			{
				"box": {
					"id": "obj-101",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						984.0,
						674.0,
						100.0,
						20.0
					],
					"text": "density"
				}
			},
			{
				"box": {
					"id": "obj-102",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						940.0,
						700.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/*/density",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-103",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						900.0,
						80.0,
						260.0,
						20.0
					],
					"text": "BEAT DISPLAY (from the conductor)",
					"fontface": 1
				}
			},
			{
				"box": {
					"id": "obj-104",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						900.0,
						104.0,
						110.0,
						22.0
					],
					"text": "udpreceive 57301"
				}
			},
			{
				"box": {
					"id": "obj-105",
					"maxclass": "newobj",
					"numinlets": 2,
					"numoutlets": 2,
					"outlettype": [
						"",
						""
					],
					"patching_rect": [
						900.0,
						136.0,
						190.0,
						22.0
					],
					"text": "route /barcelona/demo/beat"
				}
			},
			{
				"box": {
					"id": "obj-106",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 4,
					"outlettype": [
						"int",
						"int",
						"",
						"float"
					],
					"patching_rect": [
						900.0,
						168.0,
						190.0,
						22.0
					],
					"text": "unpack i i s f"
				}
			},
			{
				"box": {
					"id": "obj-107",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						900.0,
						214.0,
						50.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": -1000000,
					"maximum": 1000000
				}
			},
			{
				"box": {
					"id": "obj-108",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						960.0,
						214.0,
						40.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": 0,
					"maximum": 64
				}
			},
			{
				"box": {
					"id": "obj-109",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						1010.0,
						200.0,
						70.0,
						22.0
					],
					"text": "prepend set"
				}
			},
			{
				"box": {
					"id": "obj-110",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						1010.0,
						230.0,
						80.0,
						22.0
					],
					"text": ""
				}
			},
			{
				"box": {
					"id": "obj-111",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						1100.0,
						214.0,
						60.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": 0.0,
					"maximum": 1000.0
				}
			},
			{
				"box": {
					"id": "obj-112",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						900.0,
						240.0,
						40.0,
						20.0
					],
					"text": "bar"
				}
			},
			{
				"box": {
					"id": "obj-113",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						960.0,
						240.0,
						40.0,
						20.0
					],
					"text": "beat"
				}
			},
			{
				"box": {
					"id": "obj-114",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						1010.0,
						256.0,
						60.0,
						20.0
					],
					"text": "chord"
				}
			},
			{
				"box": {
					"id": "obj-115",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						1100.0,
						240.0,
						50.0,
						20.0
					],
					"text": "tempo"
				}
			},
			{
				"box": {
					"id": "obj-116",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						900.0,
						300.0,
						300.0,
						34.0
					],
					"text": "TO THE CONDUCTOR (edit the address if it runs on another machine)",
					"linecount": 2
				}
			},
			{
				"box": {
					"id": "obj-117",
					"maxclass": "newobj",
					"numinlets": 0,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						900.0,
						340.0,
						110.0,
						22.0
					],
					"text": "r barcelona.out"
				}
			},
			{
				"box": {
					"id": "obj-118",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						900.0,
						372.0,
						160.0,
						22.0
					],
					"text": "udpsend 127.0.0.1 57300"
				}
			},
			{
				"box": {
					"id": "obj-201",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						20.0,
						910.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": 0,
					"maximum": 127
				}
			},
			{
				"box": {
					"id": "obj-202",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						84.0,
						910.0,
						160.0,
						20.0
					],
					"text": "volume (CC7)"
				}
			},
			{
				"box": {
					"id": "obj-203",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						40.0,
						936.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/bass/volume",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-204",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						20.0,
						962.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": -1.0,
					"maximum": 1.0
				}
			},
			{
				"box": {
					"id": "obj-205",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						84.0,
						962.0,
						160.0,
						20.0
					],
					"text": "pan -1..1 (CC10)"
				}
			},
			{
				"box": {
					"id": "obj-206",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						40.0,
						988.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/bass/pan",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-207",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						20.0,
						1014.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": 1,
					"maximum": 127
				}
			},
			{
				"box": {
					"id": "obj-208",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						84.0,
						1014.0,
						160.0,
						20.0
					],
					"text": "dynamics (velocity)"
				}
			},
			{
				"box": {
					"id": "obj-209",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						40.0,
						1040.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/bass/dynamics",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-210",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						320.0,
						910.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": 0,
					"maximum": 127
				}
			},
			{
				"box": {
					"id": "obj-211",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						384.0,
						910.0,
						160.0,
						20.0
					],
					"text": "volume (CC7)"
				}
			},
			{
				"box": {
					"id": "obj-212",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						340.0,
						936.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/piano/volume",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-213",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						320.0,
						962.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": -1.0,
					"maximum": 1.0
				}
			},
			{
				"box": {
					"id": "obj-214",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						384.0,
						962.0,
						160.0,
						20.0
					],
					"text": "pan -1..1 (CC10)"
				}
			},
			{
				"box": {
					"id": "obj-215",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						340.0,
						988.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/piano/pan",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-216",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						320.0,
						1014.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": 1,
					"maximum": 127
				}
			},
			{
				"box": {
					"id": "obj-217",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						384.0,
						1014.0,
						160.0,
						20.0
					],
					"text": "dynamics (velocity)"
				}
			},
			{
				"box": {
					"id": "obj-218",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						340.0,
						1040.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/piano/dynamics",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-219",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						620.0,
						910.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": 0,
					"maximum": 127
				}
			},
			{
				"box": {
					"id": "obj-220",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						684.0,
						910.0,
						160.0,
						20.0
					],
					"text": "volume (CC7)"
				}
			},
			{
				"box": {
					"id": "obj-221",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						640.0,
						936.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/drums/volume",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-222",
					"maxclass": "flonum",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						620.0,
						962.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"format": 6,
					"minimum": -1.0,
					"maximum": 1.0
				}
			},
			{
				"box": {
					"id": "obj-223",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						684.0,
						962.0,
						160.0,
						20.0
					],
					"text": "pan -1..1 (CC10)"
				}
			},
			{
				"box": {
					"id": "obj-224",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						640.0,
						988.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/drums/pan",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-225",
					"maxclass": "number",
					"numinlets": 1,
					"numoutlets": 2,
					"outlettype": [
						"",
						"bang"
					],
					"patching_rect": [
						620.0,
						1014.0,
						56.0,
						22.0
					],
					"parameter_enable": 0,
					"minimum": 1,
					"maximum": 127
				}
			},
			{
				"box": {
					"id": "obj-226",
					"maxclass": "comment",
					"numinlets": 1,
					"numoutlets": 0,
					"patching_rect": [
						684.0,
						1014.0,
						160.0,
						20.0
					],
					"text": "dynamics (velocity)"
				}
			},
			{
				"box": {
					"id": "obj-227",
					"maxclass": "newobj",
					"numinlets": 1,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						640.0,
						1040.0,
						270.0,
						20.0
					],
					"text": "prepend /barcelona/demo/agent/drums/dynamics",
					"fontsize": 10.0
				}
			},
			{
				"box": {
					"id": "obj-228",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						420.0,
						200.0,
						200.0,
						22.0
					],
					"text": "/barcelona/demo/follow_tempo 1"
				}
			},
			{
				"box": {
					"id": "obj-229",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						420.0,
						230.0,
						200.0,
						22.0
					],
					"text": "/barcelona/demo/follow_tempo 0"
				}
			},
			{
				"box": {
					"id": "obj-230",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						630.0,
						200.0,
						200.0,
						22.0
					],
					"text": "/barcelona/demo/substitutions 1"
				}
			},
			{
				"box": {
					"id": "obj-231",
					"maxclass": "message",
					"numinlets": 2,
					"numoutlets": 1,
					"outlettype": [
						""
					],
					"patching_rect": [
						630.0,
						230.0,
						200.0,
						22.0
					],
					"text": "/barcelona/demo/substitutions 0"
				}
			}
		],
		"lines": [
			{
				"patchline": {
					"destination": [
						"obj-6",
						0
					],
					"source": [
						"obj-5",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-9",
						0
					],
					"source": [
						"obj-6",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-9",
						0
					],
					"source": [
						"obj-7",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-9",
						0
					],
					"source": [
						"obj-8",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-11",
						0
					],
					"source": [
						"obj-10",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-9",
						0
					],
					"source": [
						"obj-11",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-15",
						0
					],
					"source": [
						"obj-14",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-16",
						0
					],
					"source": [
						"obj-15",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-16",
						0
					],
					"source": [
						"obj-17",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-16",
						0
					],
					"source": [
						"obj-18",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-16",
						0
					],
					"source": [
						"obj-19",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-20",
						0
					],
					"source": [
						"obj-16",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-24",
						0
					],
					"source": [
						"obj-22",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-26",
						0
					],
					"source": [
						"obj-24",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-25",
						0
					],
					"source": [
						"obj-23",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-26",
						0
					],
					"source": [
						"obj-25",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-28",
						0
					],
					"source": [
						"obj-26",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-28",
						0
					],
					"source": [
						"obj-27",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-29",
						0
					],
					"source": [
						"obj-28",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-36",
						0
					],
					"source": [
						"obj-34",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-33",
						0
					],
					"source": [
						"obj-36",
						0
					],
					"midpoints": [
						44.5,
						619.0,
						313.0,
						619.0,
						313.0,
						874.0,
						44.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-39",
						0
					],
					"source": [
						"obj-37",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-33",
						0
					],
					"source": [
						"obj-39",
						0
					],
					"midpoints": [
						44.5,
						671.0,
						313.0,
						671.0,
						313.0,
						874.0,
						44.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-42",
						0
					],
					"source": [
						"obj-40",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-33",
						0
					],
					"source": [
						"obj-42",
						0
					],
					"midpoints": [
						44.5,
						723.0,
						313.0,
						723.0,
						313.0,
						874.0,
						44.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-45",
						0
					],
					"source": [
						"obj-43",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-33",
						0
					],
					"source": [
						"obj-45",
						0
					],
					"midpoints": [
						44.5,
						775.0,
						313.0,
						775.0,
						313.0,
						874.0,
						44.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-48",
						0
					],
					"source": [
						"obj-46",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-33",
						0
					],
					"source": [
						"obj-48",
						0
					],
					"midpoints": [
						44.5,
						827.0,
						313.0,
						827.0,
						313.0,
						874.0,
						44.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-51",
						0
					],
					"source": [
						"obj-49",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-33",
						0
					],
					"source": [
						"obj-51",
						0
					],
					"midpoints": [
						44.5,
						879.0,
						313.0,
						879.0,
						313.0,
						874.0,
						44.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-56",
						0
					],
					"source": [
						"obj-54",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-53",
						0
					],
					"source": [
						"obj-56",
						0
					],
					"midpoints": [
						344.5,
						619.0,
						613.0,
						619.0,
						613.0,
						874.0,
						344.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-59",
						0
					],
					"source": [
						"obj-57",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-53",
						0
					],
					"source": [
						"obj-59",
						0
					],
					"midpoints": [
						344.5,
						671.0,
						613.0,
						671.0,
						613.0,
						874.0,
						344.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-62",
						0
					],
					"source": [
						"obj-60",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-53",
						0
					],
					"source": [
						"obj-62",
						0
					],
					"midpoints": [
						344.5,
						723.0,
						613.0,
						723.0,
						613.0,
						874.0,
						344.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-65",
						0
					],
					"source": [
						"obj-63",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-53",
						0
					],
					"source": [
						"obj-65",
						0
					],
					"midpoints": [
						344.5,
						775.0,
						613.0,
						775.0,
						613.0,
						874.0,
						344.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-68",
						0
					],
					"source": [
						"obj-66",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-53",
						0
					],
					"source": [
						"obj-68",
						0
					],
					"midpoints": [
						344.5,
						827.0,
						613.0,
						827.0,
						613.0,
						874.0,
						344.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-71",
						0
					],
					"source": [
						"obj-69",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-53",
						0
					],
					"source": [
						"obj-71",
						0
					],
					"midpoints": [
						344.5,
						879.0,
						613.0,
						879.0,
						613.0,
						874.0,
						344.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-76",
						0
					],
					"source": [
						"obj-74",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-73",
						0
					],
					"source": [
						"obj-76",
						0
					],
					"midpoints": [
						644.5,
						619.0,
						913.0,
						619.0,
						913.0,
						874.0,
						644.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-79",
						0
					],
					"source": [
						"obj-77",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-73",
						0
					],
					"source": [
						"obj-79",
						0
					],
					"midpoints": [
						644.5,
						671.0,
						913.0,
						671.0,
						913.0,
						874.0,
						644.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-82",
						0
					],
					"source": [
						"obj-80",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-73",
						0
					],
					"source": [
						"obj-82",
						0
					],
					"midpoints": [
						644.5,
						723.0,
						913.0,
						723.0,
						913.0,
						874.0,
						644.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-85",
						0
					],
					"source": [
						"obj-83",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-73",
						0
					],
					"source": [
						"obj-85",
						0
					],
					"midpoints": [
						644.5,
						775.0,
						913.0,
						775.0,
						913.0,
						874.0,
						644.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-88",
						0
					],
					"source": [
						"obj-86",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-73",
						0
					],
					"source": [
						"obj-88",
						0
					],
					"midpoints": [
						644.5,
						827.0,
						913.0,
						827.0,
						913.0,
						874.0,
						644.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-91",
						0
					],
					"source": [
						"obj-89",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-73",
						0
					],
					"source": [
						"obj-91",
						0
					],
					"midpoints": [
						644.5,
						879.0,
						913.0,
						879.0,
						913.0,
						874.0,
						644.5,
						874.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-96",
						0
					],
					"source": [
						"obj-94",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-93",
						0
					],
					"source": [
						"obj-96",
						0
					],
					"midpoints": [
						944.5,
						619.0,
						1213.0,
						619.0,
						1213.0,
						718.0,
						944.5,
						718.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-99",
						0
					],
					"source": [
						"obj-97",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-93",
						0
					],
					"source": [
						"obj-99",
						0
					],
					"midpoints": [
						944.5,
						671.0,
						1213.0,
						671.0,
						1213.0,
						718.0,
						944.5,
						718.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-102",
						0
					],
					"source": [
						"obj-100",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-93",
						0
					],
					"source": [
						"obj-102",
						0
					],
					"midpoints": [
						944.5,
						723.0,
						1213.0,
						723.0,
						1213.0,
						718.0,
						944.5,
						718.0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-105",
						0
					],
					"source": [
						"obj-104",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-106",
						0
					],
					"source": [
						"obj-105",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-107",
						0
					],
					"source": [
						"obj-106",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-108",
						0
					],
					"source": [
						"obj-106",
						1
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-109",
						0
					],
					"source": [
						"obj-106",
						2
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-110",
						0
					],
					"source": [
						"obj-109",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-111",
						0
					],
					"source": [
						"obj-106",
						3
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-118",
						0
					],
					"source": [
						"obj-117",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-9",
						0
					],
					"source": [
						"obj-119",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-9",
						0
					],
					"source": [
						"obj-120",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-203",
						0
					],
					"source": [
						"obj-201",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-33",
						0
					],
					"source": [
						"obj-203",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-206",
						0
					],
					"source": [
						"obj-204",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-33",
						0
					],
					"source": [
						"obj-206",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-209",
						0
					],
					"source": [
						"obj-207",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-33",
						0
					],
					"source": [
						"obj-209",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-212",
						0
					],
					"source": [
						"obj-210",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-53",
						0
					],
					"source": [
						"obj-212",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-215",
						0
					],
					"source": [
						"obj-213",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-53",
						0
					],
					"source": [
						"obj-215",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-218",
						0
					],
					"source": [
						"obj-216",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-53",
						0
					],
					"source": [
						"obj-218",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-221",
						0
					],
					"source": [
						"obj-219",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-73",
						0
					],
					"source": [
						"obj-221",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-224",
						0
					],
					"source": [
						"obj-222",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-73",
						0
					],
					"source": [
						"obj-224",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-227",
						0
					],
					"source": [
						"obj-225",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-73",
						0
					],
					"source": [
						"obj-227",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-9",
						0
					],
					"source": [
						"obj-228",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-9",
						0
					],
					"source": [
						"obj-229",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-9",
						0
					],
					"source": [
						"obj-230",
						0
					]
				}
			},
			{
				"patchline": {
					"destination": [
						"obj-9",
						0
					],
					"source": [
						"obj-231",
						0
					]
				}
			}
		],
		"dependency_cache": [],
		"autosave": 0
	}
}
